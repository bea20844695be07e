//! The `image-metadata` task: describes a base64-encoded PNG, JPEG, GIF, WebP or BMP image (format, size, colour
//! type, dominant colours) and guesses whether it is a photo, a diagram or a screenshot.
//!
//! Decoding is bounded before it starts: the header's dimensions are checked against a pixel budget, and the
//! decoder runs under `image::Limits`, so a small file that claims a huge canvas (a decompression bomb) is refused
//! rather than allocated. The colour analysis reads a bounded grid of sample points, so its cost does not grow with
//! the image.

use std::io::Cursor;

use base64::Engine as _;
use image::{ColorType, DynamicImage, GenericImageView, ImageError, ImageFormat, ImageReader, Limits};
use serde_json::{Map, Value, json};

use crate::input::{self, InputError};

pub const NAME: &str = "image-metadata";
pub const DESCRIPTION: &str = "Describes a base64-encoded PNG, JPEG, GIF, WebP or BMP image: format, dimensions, \
     colour type, dominant colours, and a heuristic classification as photo, diagram or screenshot.";

/// The largest image file accepted, after base64 decoding.
pub const MAX_IMAGE_BYTES: usize = 8 * 1024 * 1024;
/// The longest base64 text that can decode to at most `MAX_IMAGE_BYTES` (padded, 4 characters per 3 bytes).
pub const MAX_IMAGE_BASE64_CHARS: usize = MAX_IMAGE_BYTES.div_ceil(3) * 4;
/// The pixel budget: 4096×4096, whose RGBA8 buffer is exactly `MAX_DECODE_BYTES`.
pub const MAX_PIXELS: u64 = 4096 * 4096;
/// The longest side accepted, so a long thin strip cannot slip under the pixel budget with a huge row buffer.
pub const MAX_SIDE: u32 = 16_384;
/// What the decoder may allocate (passed to `image::Limits::max_alloc`).
pub const MAX_DECODE_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_COLORS: u64 = 10;
pub const DEFAULT_MAX_COLORS: u64 = 5;
/// At most this many sample points per axis: the colour analysis reads at most 256×256 points (and one neighbour
/// of each), whatever the image size.
pub const SAMPLE_SIDE: u32 = 256;

const SUPPORTED: &str = "png, jpeg, gif, webp, bmp";
const FIELDS: &[&str] = &["image", "max_colors"];

/// Screen and phone resolutions (landscape; portrait is checked by swapping): an image of exactly one of these sizes
/// is very likely a capture of a whole screen.
const SCREEN_RESOLUTIONS: &[(u32, u32)] = &[
    (1024, 768),
    (1280, 720),
    (1280, 800),
    (1280, 1024),
    (1366, 768),
    (1440, 900),
    (1536, 864),
    (1600, 900),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (2048, 1536),
    (2560, 1080),
    (2560, 1440),
    (2560, 1600),
    (2732, 2048),
    (2880, 1800),
    (3024, 1964),
    (3440, 1440),
    (3456, 2234),
    (3840, 2160),
    (1334, 750),
    (1792, 828),
    (2340, 1080),
    (2400, 1080),
    (2436, 1125),
    (2532, 1170),
    (2556, 1179),
    (2688, 1242),
    (2778, 1284),
    (2796, 1290),
    (3120, 1440),
    (3200, 1440),
];

pub fn input_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "image": {
                "type": "string",
                "description": format!(
                    "The image file ({SUPPORTED}), base64-encoded with the standard alphabet and padding; \
                     at most {MAX_IMAGE_BYTES} bytes once decoded and at most {MAX_PIXELS} pixels \
                     ({MAX_SIDE} a side)"
                ),
                "contentEncoding": "base64",
                "minLength": 1,
                "maxLength": MAX_IMAGE_BASE64_CHARS,
            },
            "max_colors": {
                "type": "integer",
                "description": "How many dominant colours to report",
                "minimum": 1,
                "maximum": MAX_COLORS,
                "default": DEFAULT_MAX_COLORS,
            },
        },
        "required": ["image"],
        "additionalProperties": false,
    })
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, FIELDS)?;
    let encoded = input::string(obj, "image", MAX_IMAGE_BASE64_CHARS)?;
    let max_colors = integer_in(obj, "max_colors", 1, MAX_COLORS, DEFAULT_MAX_COLORS)? as usize;

    if encoded.is_empty() {
        return Err(refuse("image is empty"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| refuse(format!("image is not valid base64 (standard alphabet, padded): {e}")))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(refuse(format!("image must be at most {MAX_IMAGE_BYTES} bytes once decoded")));
    }

    let (format, format_name) = detect_format(&bytes)?;
    let (width, height) = checked_dimensions(&bytes, format, format_name)?;
    let image = decode(&bytes, format, format_name)?;
    let stats = Stats::sample(&image);
    let color_type = image.color();
    let (class, reasons) = classify(&stats, width, height, format);

    let dominant: Vec<Value> =
        stats.dominant(max_colors).into_iter().map(|(hex, share)| json!({ "hex": hex, "share": share })).collect();
    Ok(json!({
        "format": format_name,
        "width": width,
        "height": height,
        "size_bytes": bytes.len(),
        "megapixels": round4(f64::from(width) * f64::from(height) / 1e6),
        "aspect_ratio": round4(f64::from(width) / f64::from(height)),
        "has_alpha": color_type.has_alpha(),
        "color_type": color_type_name(color_type),
        "dominant_colors": dominant,
        "classification": class.name(),
        "classification_reasons": reasons,
    }))
}

fn refuse(detail: impl Into<String>) -> InputError {
    InputError::new("/image", detail)
}

/// An optional integer field within `min..=max`; absent means `default`.
fn integer_in(obj: &Map<String, Value>, field: &str, min: u64, max: u64, default: u64) -> Result<u64, InputError> {
    match obj.get(field) {
        None => Ok(default),
        Some(v) => v.as_u64().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
            InputError::new(format!("/{field}"), format!("{field} must be an integer from {min} to {max}"))
        }),
    }
}

/// The format from the file's magic bytes (never from a caller's claim), limited to the codecs compiled in.
fn detect_format(bytes: &[u8]) -> Result<(ImageFormat, &'static str), InputError> {
    let unknown = || refuse(format!("image is not in a supported format; supported formats: {SUPPORTED}"));
    match image::guess_format(bytes).map_err(|_| unknown())? {
        ImageFormat::Png => Ok((ImageFormat::Png, "png")),
        ImageFormat::Jpeg => Ok((ImageFormat::Jpeg, "jpeg")),
        ImageFormat::Gif => Ok((ImageFormat::Gif, "gif")),
        ImageFormat::WebP => Ok((ImageFormat::WebP, "webp")),
        ImageFormat::Bmp => Ok((ImageFormat::Bmp, "bmp")),
        other => Err(refuse(format!(
            "image is {} data, which is not supported; supported formats: {SUPPORTED}",
            other.extensions_str().first().copied().unwrap_or("unknown")
        ))),
    }
}

fn budget() -> String {
    format!(
        "the budget is {MAX_PIXELS} pixels ({:.1} megapixels, e.g. 4096×4096) and {MAX_SIDE} pixels a side",
        MAX_PIXELS as f64 / 1e6
    )
}

/// The strict limits for decoding: the same budget as the header check, enforced again by the decoder itself.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Reads only the header and checks its dimensions against the budget, before anything is allocated for pixels.
/// The header read runs without the side limits so that a refusal can name the claimed size.
fn checked_dimensions(bytes: &[u8], format: ImageFormat, name: &str) -> Result<(u32, u32), InputError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(header_limits);
    let (width, height) = reader.into_dimensions().map_err(|e| decode_error(&e, name))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(refuse(format!("image is {width}×{height}: it has no pixels")));
    }
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(refuse(format!(
            "image is {width}×{height} ({:.1} megapixels), over the budget: {}",
            pixels as f64 / 1e6,
            budget()
        )));
    }
    Ok((width, height))
}

fn decode(bytes: &[u8], format: ImageFormat, name: &str) -> Result<DynamicImage, InputError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    reader.decode().map_err(|e| decode_error(&e, name))
}

fn decode_error(e: &ImageError, name: &str) -> InputError {
    match e {
        ImageError::Limits(_) => refuse(format!(
            "image is over the decoding budget ({e}): {}, and at most {} MiB for the decoded pixels",
            budget(),
            MAX_DECODE_BYTES / (1024 * 1024)
        )),
        ImageError::Unsupported(_) => refuse(format!("image uses a {name} feature that is not supported: {e}")),
        _ => refuse(format!("image is not a valid {name} file (truncated or corrupt): {e}")),
    }
}

/// What the sample grid saw.
struct Stats {
    /// Quantised colour bins (4 bits a channel, so 4096), indexed by the top nibbles of r, g and b.
    bins: Vec<Bin>,
    /// Samples counted in the bins (not fully transparent).
    opaque: u32,
    /// Samples with any transparency.
    translucent: u32,
    samples: u32,
    /// Exact distinct RGB colours among the counted samples.
    distinct: usize,
    /// Sample points compared with their right-hand neighbour (a real neighbour in the image, not in the grid).
    pairs: u32,
    /// Neighbour pairs that differ by at most `FLAT_DIFF` on every channel.
    flat: u32,
    /// Neighbour pairs that differ by at least `EDGE_DIFF` on some channel.
    edge: u32,
}

#[derive(Clone, Copy, Default)]
struct Bin {
    count: u32,
    /// The bin's most common exact colour (0x00rrggbb) and its count: the colour reported for the bin, so a flat
    /// white stays #ffffff even when a light grey falls in the same bin.
    mode: u32,
    mode_count: u32,
}

/// Small differences are noise (JPEG artefacts, sensor noise), not a change of colour.
const FLAT_DIFF: u8 = 2;
/// A jump this large between neighbours is a drawn edge rather than a gradient.
const EDGE_DIFF: u8 = 48;

impl Stats {
    fn sample(image: &DynamicImage) -> Self {
        let (width, height) = image.dimensions();
        let (grid_w, grid_h) = (width.min(SAMPLE_SIDE), height.min(SAMPLE_SIDE));
        let mut stats = Stats {
            bins: vec![Bin::default(); 4096],
            opaque: 0,
            translucent: 0,
            samples: 0,
            distinct: 0,
            pairs: 0,
            flat: 0,
            edge: 0,
        };
        let mut colours = Vec::with_capacity((grid_w * grid_h) as usize);
        for j in 0..grid_h {
            // The centre of each grid cell: with no downscaling this is every pixel exactly.
            let y = ((2 * u64::from(j) + 1) * u64::from(height) / (2 * u64::from(grid_h))) as u32;
            for i in 0..grid_w {
                let x = ((2 * u64::from(i) + 1) * u64::from(width) / (2 * u64::from(grid_w))) as u32;
                let pixel = image.get_pixel(x, y).0;
                stats.samples += 1;
                if pixel[3] < u8::MAX {
                    stats.translucent += 1;
                }
                if pixel[3] > 0 {
                    // Fully transparent pixels have no meaningful colour.
                    stats.opaque += 1;
                    colours.push(u32::from_be_bytes([0, pixel[0], pixel[1], pixel[2]]));
                }
                if x + 1 < width {
                    let next = image.get_pixel(x + 1, y).0;
                    let diff = pixel.iter().zip(next).map(|(a, b)| a.abs_diff(b)).max().unwrap_or(0);
                    stats.pairs += 1;
                    if diff <= FLAT_DIFF {
                        stats.flat += 1;
                    } else if diff >= EDGE_DIFF {
                        stats.edge += 1;
                    }
                }
            }
        }
        // Sorted, equal colours are runs: count each exact colour once, and fold it into its bin. Ascending order
        // with a strict `>` makes the smallest colour win a tie, so the result does not depend on sampling order.
        colours.sort_unstable();
        for run in colours.chunk_by(|a, b| a == b) {
            let (colour, n) = (run[0], run.len() as u32);
            // 0x00rrggbb to 0xRGB: the top nibble of each channel.
            let bin =
                &mut stats.bins[(((colour >> 12) & 0xf00) | ((colour >> 8) & 0xf0) | ((colour >> 4) & 0xf)) as usize];
            bin.count += n;
            if n > bin.mode_count {
                (bin.mode, bin.mode_count) = (colour, n);
            }
            stats.distinct += 1;
        }
        stats
    }

    /// The most common bins, as (mean colour hex, share of the counted samples), by share then hex.
    fn dominant(&self, max: usize) -> Vec<(String, f64)> {
        let mut found: Vec<(u32, String)> =
            self.bins.iter().filter(|bin| bin.count > 0).map(|bin| (bin.count, format!("#{:06x}", bin.mode))).collect();
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(max);
        found.into_iter().map(|(count, hex)| (hex, round4(f64::from(count) / f64::from(self.opaque)))).collect()
    }

    /// The share of the counted samples in the `n` most common bins.
    fn top_share(&self, n: usize) -> f64 {
        if self.opaque == 0 {
            return 0.0;
        }
        let mut counts: Vec<u32> = self.bins.iter().map(|bin| bin.count).filter(|&c| c > 0).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        f64::from(counts.iter().take(n).sum::<u32>()) / f64::from(self.opaque)
    }

    fn ratio(part: u32, whole: u32) -> f64 {
        if whole == 0 { 0.0 } else { f64::from(part) / f64::from(whole) }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Photo,
    Screenshot,
    Diagram,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Photo => "photo",
            Class::Screenshot => "screenshot",
            Class::Diagram => "diagram",
        }
    }
}

/// Scores each class from independent signals and returns the best one (ties go to photo, then screenshot) with the
/// reasons that voted for it. Each signal is a rough rule of thumb; together they separate the common cases.
fn classify(stats: &Stats, width: u32, height: u32, format: ImageFormat) -> (Class, Vec<String>) {
    let mut votes: Vec<(Class, u32, String)> = Vec::new();
    let mut vote = |classes: &[(Class, u32)], reason: String| {
        for &(class, points) in classes {
            votes.push((class, points, reason.clone()));
        }
    };

    let counted = stats.opaque;
    let richness = Stats::ratio(stats.distinct as u32, counted);
    let distinct = stats.distinct;
    if distinct >= 64 && richness >= 0.25 {
        vote(
            &[(Class::Photo, 2)],
            format!("{distinct} distinct colours in {counted} sampled pixels: continuous tones, as in a photo"),
        );
    } else if distinct <= 64 || richness < 0.05 {
        vote(
            &[(Class::Diagram, 2), (Class::Screenshot, 1)],
            format!("only {distinct} distinct colours in {counted} sampled pixels: a drawn or rendered palette"),
        );
    }

    let top = stats.top_share(5);
    if top >= 0.8 {
        vote(
            &[(Class::Diagram, 1), (Class::Screenshot, 1)],
            format!("the 5 most common colours cover {:.0}% of the image", top * 100.0),
        );
    } else if top <= 0.4 && counted > 0 {
        vote(&[(Class::Photo, 1)], format!("the 5 most common colours cover only {:.0}% of the image", top * 100.0));
    }

    let flat = Stats::ratio(stats.flat, stats.pairs);
    let edge = Stats::ratio(stats.edge, stats.pairs);
    let soft = 1.0 - flat - edge;
    if stats.pairs > 0 {
        if flat >= 0.6 {
            vote(
                &[(Class::Diagram, 1), (Class::Screenshot, 1)],
                format!("{:.0}% of neighbouring pixels are identical: large flat regions", flat * 100.0),
            );
        }
        if soft >= 0.5 {
            vote(
                &[(Class::Photo, 2)],
                format!("{:.0}% of neighbouring pixels differ slightly: gradients and texture", soft * 100.0),
            );
        }
        if stats.edge > 0 && edge >= 2.0 * soft {
            vote(
                &[(Class::Diagram, 1), (Class::Screenshot, 1)],
                "colour changes are mostly hard edges rather than gradients".to_owned(),
            );
        }
    }

    let (long, short) = (width.max(height), width.min(height));
    if SCREEN_RESOLUTIONS.contains(&(long, short)) {
        vote(&[(Class::Screenshot, 3)], format!("{width}×{height} is a common screen resolution"));
    } else if long >= 1280 && (long * 9 == short * 16 || long * 10 == short * 16) {
        vote(&[(Class::Screenshot, 1)], format!("{width}×{height} has a screen aspect ratio (16:9 or 16:10)"));
    }

    if stats.translucent > 0 {
        vote(
            &[(Class::Diagram, 2)],
            format!(
                "{:.0}% of sampled pixels are transparent or translucent: photos and screenshots are opaque",
                Stats::ratio(stats.translucent, stats.samples) * 100.0
            ),
        );
    }
    if format == ImageFormat::Jpeg {
        vote(&[(Class::Photo, 1)], "JPEG is the usual format for camera photos".to_owned());
    }

    let score = |class: Class| votes.iter().filter(|v| v.0 == class).map(|v| v.1).sum::<u32>();
    let mut best = Class::Photo;
    for class in [Class::Screenshot, Class::Diagram] {
        if score(class) > score(best) {
            best = class;
        }
    }
    let mut reasons: Vec<String> = votes.into_iter().filter(|v| v.0 == best).map(|v| v.2).collect();
    if reasons.is_empty() {
        reasons.push("no signal stood out; photo is the default".to_owned());
    }
    (best, reasons)
}

fn color_type_name(color: ColorType) -> &'static str {
    match color {
        ColorType::L8 => "l8",
        ColorType::La8 => "la8",
        ColorType::Rgb8 => "rgb8",
        ColorType::Rgba8 => "rgba8",
        ColorType::L16 => "l16",
        ColorType::La16 => "la16",
        ColorType::Rgb16 => "rgb16",
        ColorType::Rgba16 => "rgba16",
        ColorType::Rgb32F => "rgb32f",
        ColorType::Rgba32F => "rgba32f",
        _ => "other",
    }
}

/// Four decimals: enough for shares and ratios, and stable across platforms.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn encode(image: &DynamicImage, format: ImageFormat) -> String {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    }

    fn refusal(input: &Value) -> InputError {
        run(input).expect_err("must be refused")
    }

    fn red_blue() -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(4, 2, |x, _| if x < 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) }))
    }

    /// A deterministic photo-like image: smooth gradients plus per-pixel noise.
    fn photo_like(width: u32, height: u32) -> DynamicImage {
        let mut state: u32 = 0x1234_5678;
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            let mut noise = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8 % 24
            };
            Rgb([
                (x * 200 / width) as u8 + noise(),
                (y * 200 / height) as u8 + noise(),
                ((x + y) * 100 / (width + height)) as u8 + 60 + noise(),
            ])
        }))
    }

    #[test]
    fn half_red_half_blue_png() {
        let out = run(&json!({ "image": encode(&red_blue(), ImageFormat::Png) })).unwrap();
        assert_eq!(out["format"], "png");
        assert_eq!(out["width"], 4);
        assert_eq!(out["height"], 2);
        assert_eq!(out["aspect_ratio"], 2.0);
        assert_eq!(out["has_alpha"], false);
        assert_eq!(out["color_type"], "rgb8");
        assert_eq!(
            out["dominant_colors"],
            json!([{ "hex": "#0000ff", "share": 0.5 }, { "hex": "#ff0000", "share": 0.5 }])
        );
        assert_eq!(out["classification"], "diagram");
        assert!(out["size_bytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn max_colors_limits_the_list_and_output_is_deterministic() {
        let image = encode(&photo_like(64, 48), ImageFormat::Png);
        let input = json!({ "image": image, "max_colors": 3 });
        let out = run(&input).unwrap();
        let colours = out["dominant_colors"].as_array().unwrap();
        assert_eq!(colours.len(), 3);
        let shares: Vec<f64> = colours.iter().map(|c| c["share"].as_f64().unwrap()).collect();
        assert!(shares.windows(2).all(|w| w[0] >= w[1]), "{shares:?}");
        assert_eq!(run(&input).unwrap(), out);
    }

    #[test]
    fn gradient_noise_is_a_photo_in_png_and_jpeg() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let out = run(&json!({ "image": encode(&photo_like(320, 240), format) })).unwrap();
            assert_eq!(out["classification"], "photo", "{format:?}: {out}");
            assert_eq!(out["width"], 320);
        }
    }

    #[test]
    fn flat_full_hd_with_few_colours_is_a_screenshot() {
        // A window: title bar, sidebar, white page with a few dark "text" lines.
        let image = RgbImage::from_fn(1920, 1080, |x, y| match (x, y) {
            (_, 0..40) => Rgb([40, 44, 52]),
            (0..300, _) => Rgb([240, 240, 240]),
            (_, y) if y % 40 < 4 && x < 1500 => Rgb([20, 20, 20]),
            _ => Rgb([255, 255, 255]),
        });
        let out = run(&json!({ "image": encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png) })).unwrap();
        assert_eq!(out["classification"], "screenshot", "{out}");
        let reasons = out["classification_reasons"].to_string();
        assert!(reasons.contains("common screen resolution"), "{reasons}");
        assert_eq!(out["dominant_colors"][0]["hex"], "#ffffff");
        assert_eq!(out["megapixels"], 2.0736);
    }

    #[test]
    fn transparent_icon_is_a_diagram_with_alpha() {
        let image = RgbaImage::from_fn(64, 64, |x, y| {
            if (x.cast_signed() - 32).pow(2) + (y.cast_signed() - 32).pow(2) < 400 {
                Rgba([0, 128, 0, 255])
            } else {
                Rgba([0; 4])
            }
        });
        let out = run(&json!({ "image": encode(&DynamicImage::ImageRgba8(image), ImageFormat::Png) })).unwrap();
        assert_eq!(out["has_alpha"], true);
        assert_eq!(out["color_type"], "rgba8");
        assert_eq!(out["classification"], "diagram");
        // Transparent pixels carry no colour: the one opaque colour has the whole share.
        assert_eq!(out["dominant_colors"], json!([{ "hex": "#008000", "share": 1.0 }]));
    }

    #[test]
    fn every_supported_format_decodes() {
        let image = red_blue();
        for (format, name) in [
            (ImageFormat::Png, "png"),
            (ImageFormat::Jpeg, "jpeg"),
            (ImageFormat::Gif, "gif"),
            (ImageFormat::WebP, "webp"),
            (ImageFormat::Bmp, "bmp"),
        ] {
            let out = run(&json!({ "image": encode(&image, format) })).unwrap();
            assert_eq!(out["format"], name);
            assert_eq!((out["width"].as_u64(), out["height"].as_u64()), (Some(4), Some(2)), "{name}");
        }
    }

    /// A PNG claiming `width`×`height` RGBA8 (valid chunk CRCs) with next to no pixel data: a bomb's header.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in data {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
                }
            }
            !crc
        }
        fn chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let body = [kind.as_slice(), data].concat();
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [width.to_be_bytes().as_slice(), &height.to_be_bytes(), &[8, 6, 0, 0, 0]].concat();
        chunk(&mut out, *b"IHDR", &ihdr);
        // The decoder reads the header up to the first IDAT: an empty zlib stream will do.
        chunk(&mut out, *b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut out, *b"IEND", &[]);
        out
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let bomb = base64::engine::general_purpose::STANDARD.encode(png_header(100_000, 100_000));
        let e = refusal(&json!({ "image": bomb }));
        assert_eq!(e.pointer, "/image");
        assert!(e.detail.contains("100000×100000"), "{}", e.detail);
        assert!(e.detail.contains(&MAX_PIXELS.to_string()), "{}", e.detail);
        // Under the pixel budget but too long a side.
        let strip = base64::engine::general_purpose::STANDARD.encode(png_header(20_000, 10));
        assert!(refusal(&json!({ "image": strip })).detail.contains("budget"));
    }

    #[test]
    fn the_decoder_limits_hold_even_without_the_header_check() {
        let mut reader = ImageReader::with_format(Cursor::new(png_header(5000, 5000)), ImageFormat::Png);
        reader.limits(limits());
        assert!(matches!(reader.decode(), Err(ImageError::Limits(_))));
    }

    #[test]
    fn bad_input_is_refused_naming_the_field() {
        let png = encode(&red_blue(), ImageFormat::Png);
        let e = refusal(&json!({ "image": "not base64!" }));
        assert_eq!(e.pointer, "/image");
        assert!(e.detail.contains("base64"), "{}", e.detail);

        let e = refusal(&json!({ "image": base64::engine::general_purpose::STANDARD.encode(b"plain text, no image") }));
        assert_eq!(e.pointer, "/image");
        assert!(e.detail.contains(SUPPORTED), "{}", e.detail);

        // TIFF is recognised but not compiled in.
        let e = refusal(&json!({ "image": base64::engine::general_purpose::STANDARD.encode(b"II*\0\x08\0\0\0") }));
        assert!(e.detail.contains("tif") && e.detail.contains(SUPPORTED), "{}", e.detail);

        let whole = base64::engine::general_purpose::STANDARD.decode(&png).unwrap();
        let truncated = base64::engine::general_purpose::STANDARD.encode(&whole[..whole.len() / 2]);
        let e = refusal(&json!({ "image": truncated }));
        assert_eq!(e.pointer, "/image");
        assert!(e.detail.contains("png"), "{}", e.detail);

        assert_eq!(refusal(&json!({ "image": "" })).pointer, "/image");
        assert_eq!(refusal(&json!({})).pointer, "/image");
        assert_eq!(refusal(&json!({ "image": 7 })).pointer, "/image");
        assert_eq!(refusal(&json!({ "image": png, "max_colors": 0 })).pointer, "/max_colors");
        assert_eq!(refusal(&json!({ "image": png, "max_colors": 11 })).pointer, "/max_colors");
        assert_eq!(refusal(&json!({ "image": png, "max_colors": 2.5 })).pointer, "/max_colors");
        assert_eq!(refusal(&json!({ "image": png, "colour": 1 })).pointer, "/colour");
        assert_eq!(refusal(&json!([])).pointer, "");

        let too_long = "A".repeat(MAX_IMAGE_BASE64_CHARS + 4);
        assert!(refusal(&json!({ "image": too_long })).detail.contains("at most"));
    }

    #[test]
    fn the_schema_matches_the_limits() {
        let schema = input_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["image"]["maxLength"], MAX_IMAGE_BASE64_CHARS);
        assert_eq!(schema["properties"]["max_colors"]["maximum"], MAX_COLORS);
        assert_eq!(schema["required"], json!(["image"]));
        // The base64 bound admits exactly the byte bound.
        const { assert!(MAX_IMAGE_BASE64_CHARS / 4 * 3 >= MAX_IMAGE_BYTES) };
        const { assert!((MAX_IMAGE_BASE64_CHARS / 4 - 1) * 3 < MAX_IMAGE_BYTES) };
    }
}
