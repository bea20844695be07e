//! The `text-analysis` handler: counts (characters, words, sentences, syllables), readability (Flesch reading ease
//! and Flesch-Kincaid grade), a lexicon sentiment, a stopword-profile language guess and the key phrases of a text.
//!
//! Everything is rule-based and in this file (word lists are `const` slices), so a result is deterministic,
//! explainable and needs no model download: the same text always gives the same answer on every platform.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::input::{self, InputError};

pub const NAME: &str = "text-analysis";
pub const DESCRIPTION: &str = "Counts characters, words, sentences and syllables of a text and scores its readability \
     (Flesch), sentiment, language (en/es/fr/de) and key phrases.";
pub const MAX_INPUT_CHARS: usize = 100_000;

const DEFAULT_TOP_PHRASES: u64 = 10;
const MAX_TOP_PHRASES: u64 = 50;
const FIELDS: &[&str] = &["text", "top_phrases"];

/// Sentiment at or beyond this score (either sign) is labelled positive/negative; closer to zero is neutral.
const SENTIMENT_THRESHOLD: f64 = 0.1;
/// How many words after a negator ("not", "never", "don't") it still flips: "not a very good" is still negated.
const NEGATION_SCOPE: usize = 3;
/// A language needs at least this many stopword hits before it is named: one shared word ("a", "in") proves nothing.
const MIN_LANGUAGE_HITS: usize = 2;

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "text-analysis input",
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INPUT_CHARS,
                "description": "The text to analyse (counted in Unicode characters)."
            },
            "top_phrases": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_TOP_PHRASES,
                "default": DEFAULT_TOP_PHRASES,
                "description": "How many key phrases to return."
            }
        },
        "required": ["text"],
        "additionalProperties": false
    })
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, FIELDS)?;
    let text = input::string(obj, "text", MAX_INPUT_CHARS)?;
    if text.is_empty() {
        return Err(InputError::new("/text", "text must not be empty"));
    }
    let top_phrases = match obj.get("top_phrases") {
        None => DEFAULT_TOP_PHRASES,
        Some(v) => v.as_u64().filter(|n| (1..=MAX_TOP_PHRASES).contains(n)).ok_or_else(|| {
            InputError::new("/top_phrases", format!("top_phrases must be an integer from 1 to {MAX_TOP_PHRASES}"))
        })?,
    };
    Ok(analyse(text, top_phrases as usize))
}

fn analyse(text: &str, top_phrases: usize) -> Value {
    // Sentences hold their words so that negation and phrases never reach across a sentence boundary.
    let sentences: Vec<Vec<&str>> =
        split_sentences(text).into_iter().map(split_words).filter(|words| !words.is_empty()).collect();
    let words: usize = sentences.iter().map(Vec::len).sum();
    let syllables: usize = sentences.iter().flatten().map(|w| count_syllables(w)).sum();
    let sentence_count = sentences.len();

    // Lowercased words, with the typographic apostrophe folded so "don’t" and "don't" are one word.
    let lowered: Vec<Vec<String>> =
        sentences.iter().map(|s| s.iter().map(|w| w.to_lowercase().replace('\u{2019}', "'")).collect()).collect();
    // Stopword and phrase work splits at apostrophes, so French "l'homme" yields "l" + "homme".
    let parts: Vec<Vec<&str>> =
        lowered.iter().map(|s| s.iter().flat_map(|w| w.split('\'')).filter(|p| !p.is_empty()).collect()).collect();

    let language = detect_language(&parts);
    let stopwords: HashSet<&str> = language.stopwords().iter().copied().collect();

    let (w, s, y) = (words as i128, sentence_count as i128, syllables as i128);
    let readability = if words == 0 {
        json!({
            "average_words_per_sentence": null,
            "average_syllables_per_word": null,
            "flesch_reading_ease": null,
            "flesch_kincaid_grade": null,
        })
    } else {
        // Exact integer arithmetic in hundredths, so a formula landing on .xx5 rounds the same everywhere
        // (116.145 must give 116.15, which f64 cannot promise).
        //   FRE × 1000·s·w = 206835·s·w − 1015·w² − 84600·y·s
        //   FKG × 100·s·w  = 39·w² + 1180·y·s − 1559·s·w
        let fre = div_round(206_835 * s * w - 1015 * w * w - 84_600 * y * s, 10 * s * w);
        let fkg = div_round(39 * w * w + 1180 * y * s - 1559 * s * w, s * w);
        json!({
            "average_words_per_sentence": hundredths(div_round(100 * w, s)),
            "average_syllables_per_word": hundredths(div_round(100 * y, w)),
            "flesch_reading_ease": hundredths(fre),
            "flesch_kincaid_grade": hundredths(fkg),
        })
    };

    let mut out = json!({
        "characters": text.chars().count(),
        "characters_no_spaces": text.chars().filter(|c| !c.is_whitespace()).count(),
        "words": words,
        "sentences": sentence_count,
        "syllables": syllables,
        "sentiment": sentiment(&lowered),
        "language": language.to_json(),
        "key_phrases": key_phrases(&parts, &stopwords, top_phrases),
    });
    if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), readability) {
        out.extend(extra);
    }
    out
}

/// `n / d` rounded half away from zero, for `d > 0`.
fn div_round(n: i128, d: i128) -> i128 {
    if n >= 0 { (2 * n + d) / (2 * d) } else { -((-2 * n + d) / (2 * d)) }
}

fn hundredths(n: i128) -> f64 {
    n as f64 / 100.0
}

// ---------------------------------------------------------------------------------------------------------------
// Sentences, words, syllables
// ---------------------------------------------------------------------------------------------------------------

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '\u{2026}')
}

/// Closing quotes and brackets that may follow a full stop and still belong to its sentence.
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '\u{201d}' | '\u{2019}' | '\u{bb}')
}

/// Splits text into sentences. A run of `.`, `!`, `?` or `…` (with any closing quotes) ends one when the end of
/// the text or whitespace follows, so "3.14" and "example.com" stay whole; a blank line ends one too, because
/// headings and list items often have no full stop. Abbreviations ("e.g. this") are counted as sentence ends,
/// as in the usual readability tools.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_terminator(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_terminator(d) && !is_closer(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            if chars.peek().is_none_or(|&(_, d)| d.is_whitespace()) {
                out.push(&text[start..end]);
                start = end;
            }
        } else if c == '\n' && text[i + 1..].chars().take_while(|d| d.is_whitespace()).any(|d| d == '\n') {
            out.push(&text[start..i]);
            start = i;
        }
    }
    out.push(&text[start..]);
    out
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

/// Combining accents (decomposed "é") belong to the letter before them.
fn is_combining_mark(c: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&c)
}

/// Words: runs of letters and digits, keeping an apostrophe between two of them ("don't", "l'homme") so a
/// contraction counts as one word, as readability formulas expect, and a decimal point or thousands comma
/// between digits ("3.14", "10,000") so a number does too. Hyphens separate words.
fn split_words(sentence: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut previous = ' ';
    let mut chars = sentence.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map_or(' ', |&(_, d)| d);
        let joins = start.is_some()
            && (is_combining_mark(c)
                || (is_apostrophe(c) && next.is_alphanumeric())
                || (matches!(c, '.' | ',') && previous.is_ascii_digit() && next.is_ascii_digit()));
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if !joins && let Some(s) = start.take() {
            out.push(&sentence[s..i]);
        }
        previous = c;
    }
    if let Some(s) = start {
        out.push(&sentence[s..]);
    }
    out
}

/// A letter as the syllable rules see it: lowercase ASCII, accented Latin vowels folded to their base vowel, any
/// other letter a consonant (`#`); digits and marks are dropped.
fn fold_letter(c: char) -> Option<char> {
    let c = c.to_lowercase().next().unwrap_or(c);
    Some(match c {
        'a'..='z' => c,
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'æ' => 'a',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'œ' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        _ if c.is_alphabetic() => '#',
        _ => return None,
    })
}

/// English syllables by the usual vowel-group heuristic behind Flesch scores (no dictionary, so no download):
/// 1. count runs of vowels, `y` being a vowel except as the first letter ("yes" 1, "happy" 2);
/// 2. a final `e` after a consonant is silent ("make" 1), except consonant + `le` ("table" 2, "little" 2);
/// 3. `-es` adds no syllable after a consonant other than s/x/z/c/g/ch/sh ("makes" 1, "boxes" 2, "tables" 2),
///    nor `-ed` after a consonant other than t/d ("jumped" 1, "wanted" 2);
/// 4. every word has at least one syllable (numbers too: "2024" counts 1).
fn count_syllables(word: &str) -> usize {
    let letters: Vec<char> = word.chars().filter_map(fold_letter).collect();
    let n = letters.len();
    let vowel = |i: usize| matches!(letters[i], 'a' | 'e' | 'i' | 'o' | 'u') || (letters[i] == 'y' && i > 0);
    let mut count = 0usize;
    let mut previous = false;
    for i in 0..n {
        let v = vowel(i);
        if v && !previous {
            count += 1;
        }
        previous = v;
    }
    // Consonant + "le" at letters[at..]: its own syllable, never silent.
    let consonant_le = |at: usize| at >= 1 && letters[at] == 'l' && !vowel(at - 1);
    if n >= 3 && letters[n - 1] == 'e' && !vowel(n - 2) && !consonant_le(n - 2) {
        count = count.saturating_sub(1);
    } else if n >= 4 && letters[n - 2] == 'e' && letters[n - 1] == 's' && !vowel(n - 3) {
        let c = letters[n - 3];
        let sibilant = matches!(c, 's' | 'x' | 'z' | 'c' | 'g') || (c == 'h' && matches!(letters[n - 4], 'c' | 's'));
        if !sibilant && !consonant_le(n - 3) {
            count = count.saturating_sub(1);
        }
    } else if n >= 4
        && letters[n - 2] == 'e'
        && letters[n - 1] == 'd'
        && !vowel(n - 3)
        && !matches!(letters[n - 3], 't' | 'd')
    {
        count = count.saturating_sub(1);
    }
    count.max(1)
}

// ---------------------------------------------------------------------------------------------------------------
// Sentiment
// ---------------------------------------------------------------------------------------------------------------

/// English words that carry a positive opinion on their own (no context-dependent words like "like" or "well").
#[rustfmt::skip]
const POSITIVE_WORDS: &[&str] = &[
    "amazing", "awesome", "beautiful", "beneficial", "benefit", "best", "better", "brilliant", "calm", "charming",
    "cheerful", "clean", "comfortable", "convenient", "cool", "delight", "delighted", "delightful", "easy",
    "effective", "efficient", "elegant", "enjoy", "enjoyable", "enjoyed", "excellent", "exceptional", "excited",
    "exciting", "fabulous", "fantastic", "fast", "favorite", "favourite", "fine", "fortunate", "friendly", "fun",
    "generous", "glad", "good", "gorgeous", "grateful", "great", "happy", "helpful", "impressive", "improved",
    "incredible", "intuitive", "joy", "kind", "love", "loved", "lovely", "loves", "lucky", "marvelous", "nice",
    "outstanding", "perfect", "pleasant", "pleased", "positive", "powerful", "praise", "proud", "recommend",
    "recommended", "reliable", "robust", "safe", "satisfied", "satisfying", "smooth", "solid", "splendid", "stable",
    "success", "successful", "superb", "terrific", "thank", "thanks", "useful", "valuable", "wonderful", "worth",
];

/// English words that carry a negative opinion on their own.
#[rustfmt::skip]
const NEGATIVE_WORDS: &[&str] = &[
    "afraid", "angry", "annoyed", "annoying", "awful", "bad", "boring", "broken", "buggy", "careless", "confused",
    "confusing", "crash", "crashed", "crashes", "cruel", "damaged", "dangerous", "defective", "dirty", "disappointed",
    "disappointing", "disappointment", "disgusting", "dreadful", "dull", "expensive", "fail", "failed", "fails",
    "failure", "fear", "flawed", "frustrated", "frustrating", "hate", "hated", "hates", "horrible", "hostile", "hurt",
    "inferior", "insecure", "lame", "mediocre", "mess", "messy", "miserable", "nasty", "negative", "noisy", "painful",
    "pathetic", "poor", "regret", "rude", "ruined", "sad", "scary", "sick", "slow", "sorry", "stupid", "terrible",
    "tired", "tragic", "ugly", "unfortunate", "unfortunately", "unhappy", "unpleasant", "unreliable", "unstable",
    "upset", "useless", "waste", "wasted", "weak", "worried", "worse", "worst", "worthless", "wrong",
];

/// Words that flip the polarity of the next sentiment word within `NEGATION_SCOPE` words; any word ending in
/// "n't" ("don't", "isn't") negates too.
const NEGATORS: &[&str] =
    &["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "hardly", "barely", "cannot"];

/// Lexicon sentiment: each lexicon word counts for its polarity, or the opposite one when a negator precedes it
/// ("not good" is negative, "never bad" positive). score = (positive − negative) / (positive + negative), so it
/// lies in −1..=1 and is 0 when no lexicon word is found. The lexicon is English; other languages read neutral.
fn sentiment(sentences: &[Vec<String>]) -> Value {
    let (mut positive, mut negative) = (0usize, 0usize);
    for sentence in sentences {
        let mut negation_left = 0usize;
        for word in sentence {
            let word = word.as_str();
            let polarity = if POSITIVE_WORDS.contains(&word) {
                Some(true)
            } else if NEGATIVE_WORDS.contains(&word) {
                Some(false)
            } else {
                None
            };
            if let Some(good) = polarity {
                // A negated word counts for the opposite polarity.
                let positive_now = good ^ (negation_left > 0);
                if positive_now {
                    positive += 1;
                } else {
                    negative += 1;
                }
                negation_left = 0;
            } else if NEGATORS.contains(&word) || word.ends_with("n't") {
                negation_left = NEGATION_SCOPE;
            } else {
                negation_left = negation_left.saturating_sub(1);
            }
        }
    }
    let total = positive + negative;
    let score = if total == 0 {
        0.0
    } else {
        hundredths(div_round(100 * (positive as i128 - negative as i128), total as i128))
    };
    let label = if score >= SENTIMENT_THRESHOLD {
        "positive"
    } else if score <= -SENTIMENT_THRESHOLD {
        "negative"
    } else {
        "neutral"
    };
    json!({ "score": score, "label": label, "positive_words": positive, "negative_words": negative })
}

// ---------------------------------------------------------------------------------------------------------------
// Language
// ---------------------------------------------------------------------------------------------------------------

/// English stopwords; the short pieces ("s", "t", "don", "isn", "ll") are what contractions leave after
/// splitting at the apostrophe.
const STOPWORDS_EN: &[&str] = &[
    "a", "about", "after", "ain", "all", "also", "am", "an", "and", "any", "are", "aren", "as", "at", "be", "because",
    "been", "before", "being", "but", "by", "can", "could", "couldn", "d", "did", "didn", "do", "does", "doesn", "don",
    "each", "for", "from", "had", "hadn", "has", "hasn", "have", "haven", "he", "her", "him", "his", "how", "i", "if",
    "in", "into", "is", "isn", "it", "its", "just", "ll", "m", "may", "me", "might", "more", "most", "must", "my",
    "no", "not", "of", "on", "only", "or", "other", "our", "out", "re", "s", "shall", "she", "should", "shouldn", "so",
    "some", "such", "t", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "up", "us", "ve", "very", "was", "wasn", "we", "were", "weren", "what", "when", "where", "which", "while",
    "who", "why", "will", "with", "won", "would", "wouldn", "you", "your",
];

const STOPWORDS_ES: &[&str] = &[
    "a", "al", "algo", "algunos", "ante", "antes", "como", "con", "contra", "cual", "cuando", "de", "del", "desde",
    "donde", "durante", "e", "el", "ella", "ellos", "en", "entre", "era", "es", "esa", "ese", "eso", "esta", "está",
    "están", "estas", "este", "esto", "estos", "fue", "ha", "han", "hasta", "hay", "la", "las", "le", "les", "lo",
    "los", "me", "mi", "mis", "mucho", "muy", "más", "nada", "ni", "no", "nos", "nosotros", "o", "otra", "otro",
    "para", "pero", "poco", "por", "porque", "que", "qué", "quien", "se", "ser", "si", "sin", "sobre", "son", "su",
    "sus", "también", "tiene", "todo", "todos", "tu", "un", "una", "uno", "unos", "y", "ya", "yo", "él",
];

const STOPWORDS_FR: &[&str] = &[
    "a", "au", "aussi", "aux", "avec", "avoir", "bien", "c", "car", "ce", "ces", "cette", "comme", "d", "dans", "de",
    "des", "donc", "du", "elle", "elles", "en", "est", "et", "être", "fait", "il", "ils", "j", "je", "l", "la", "le",
    "les", "leur", "leurs", "lui", "m", "ma", "mais", "me", "mes", "moi", "mon", "même", "n", "ne", "nos", "notre",
    "nous", "on", "ont", "ou", "où", "par", "pas", "plus", "pour", "qu", "que", "qui", "s", "sa", "sans", "se", "ses",
    "si", "son", "sont", "sous", "sur", "ta", "te", "toi", "ton", "tous", "tout", "toute", "tu", "un", "une", "vos",
    "votre", "vous", "y", "à", "été", "était", "très",
];

const STOPWORDS_DE: &[&str] = &[
    "aber", "als", "am", "an", "auch", "auf", "aus", "bei", "bin", "bis", "da", "dann", "das", "dass", "dem", "den",
    "der", "des", "dich", "die", "dies", "diese", "dieser", "dieses", "doch", "du", "durch", "ein", "eine", "einem",
    "einen", "einer", "eines", "er", "es", "für", "hat", "haben", "hier", "ich", "ihr", "ihre", "im", "immer", "in",
    "ist", "ja", "kann", "kein", "keine", "man", "mein", "mich", "mit", "mehr", "nach", "nicht", "noch", "nur", "oder",
    "schon", "sehr", "sein", "seine", "sich", "sie", "sind", "so", "um", "und", "uns", "unser", "von", "vor", "war",
    "was", "weil", "wenn", "werden", "wie", "wir", "wird", "zu", "zum", "zur", "über",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    English,
    Spanish,
    French,
    German,
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct LanguageGuess {
    language: Language,
    confidence: f64,
}

impl Language {
    /// The languages with a profile, in code order.
    const KNOWN: [Language; 4] = [Language::German, Language::English, Language::Spanish, Language::French];

    fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
            Language::French => "fr",
            Language::German => "de",
            Language::Unknown => "unknown",
        }
    }

    fn profile(self) -> &'static [&'static str] {
        match self {
            Language::English | Language::Unknown => STOPWORDS_EN,
            Language::Spanish => STOPWORDS_ES,
            Language::French => STOPWORDS_FR,
            Language::German => STOPWORDS_DE,
        }
    }
}

impl LanguageGuess {
    /// Key phrases drop the detected language's stopwords; with no guess, English's (the likeliest for a text
    /// too short to show any profile).
    fn stopwords(self) -> &'static [&'static str] {
        self.language.profile()
    }

    fn to_json(self) -> Value {
        json!({ "code": self.language.code(), "confidence": self.confidence })
    }
}

/// Language by stopword frequency: each language scores the words of the text found in its stopword profile.
/// The best one wins if it has at least `MIN_LANGUAGE_HITS` and no other language ties it; its confidence is
/// its share of all the profile hits (1.0 when no other profile matched a word), so words shared between
/// languages ("a", "de", "in") lower it.
fn detect_language(sentences: &[Vec<&str>]) -> LanguageGuess {
    let hits: Vec<(Language, usize)> = Language::KNOWN
        .iter()
        .map(|&lang| {
            let profile = lang.profile();
            (lang, sentences.iter().flatten().filter(|w| profile.contains(w)).count())
        })
        .collect();
    let total: usize = hits.iter().map(|&(_, n)| n).sum();
    let best = hits.iter().copied().max_by_key(|&(_, n)| n);
    match best {
        Some((language, n)) if n >= MIN_LANGUAGE_HITS && hits.iter().filter(|&&(_, m)| m == n).count() == 1 => {
            LanguageGuess { language, confidence: hundredths(div_round(100 * n as i128, total as i128)) }
        }
        _ => LanguageGuess { language: Language::Unknown, confidence: 0.0 },
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Key phrases
// ---------------------------------------------------------------------------------------------------------------

/// The longest phrase counted, in words.
const MAX_PHRASE_WORDS: usize = 3;

/// Key phrases: the 1–3 word n-grams inside runs of consecutive content words (not a stopword, at least two
/// characters, not a number) within one sentence, ranked by how often they occur, ties alphabetically. A
/// shorter phrase that only ever occurs inside one longer phrase with the same count is dropped in its favour
/// ("learning" inside "machine learning"), so the list is not the same phrase three times over.
fn key_phrases(sentences: &[Vec<&str>], stopwords: &HashSet<&str>, top: usize) -> Value {
    let content = |w: &str| w.chars().count() >= 2 && !w.chars().all(char::is_numeric) && !stopwords.contains(w);
    let mut counts: BTreeMap<Vec<&str>, usize> = BTreeMap::new();
    for sentence in sentences {
        for run in sentence.split(|w| !content(w)) {
            for n in 1..=MAX_PHRASE_WORDS.min(run.len()) {
                for gram in run.windows(n) {
                    *counts.entry(gram.to_vec()).or_default() += 1;
                }
            }
        }
    }
    let mut subsumed: HashSet<&[&str]> = HashSet::new();
    for (gram, &count) in &counts {
        for n in 1..gram.len() {
            for sub in gram.windows(n) {
                if counts.get(sub) == Some(&count) {
                    subsumed.insert(sub);
                }
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = counts
        .iter()
        .filter(|(gram, _)| !subsumed.contains(gram.as_slice()))
        .map(|(gram, &count)| (gram.join(" "), count))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(top);
    ranked.into_iter().map(|(phrase, count)| json!({ "phrase": phrase, "count": count })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse_text(text: &str) -> Value {
        run(&json!({ "text": text })).expect("valid input")
    }

    fn phrases(out: &Value) -> Vec<&str> {
        out["key_phrases"].as_array().expect("array").iter().map(|p| p["phrase"].as_str().expect("phrase")).collect()
    }

    #[test]
    fn cat_on_the_mat_known_answer() {
        let out = analyse_text("The cat sat on the mat.");
        assert_eq!(out["characters"], 23);
        assert_eq!(out["characters_no_spaces"], 18);
        assert_eq!(out["words"], 6);
        assert_eq!(out["sentences"], 1);
        assert_eq!(out["syllables"], 6);
        assert_eq!(out["average_words_per_sentence"], 6.0);
        assert_eq!(out["average_syllables_per_word"], 1.0);
        // 206.835 − 1.015·6 − 84.6·1 = 116.145 → 116.15 (half away from zero, exactly).
        assert_eq!(out["flesch_reading_ease"], 116.15);
        // 0.39·6 + 11.8·1 − 15.59 = −1.45
        assert_eq!(out["flesch_kincaid_grade"], -1.45);
    }

    #[test]
    fn multi_sentence_known_answer() {
        // By hand, syllables per word:
        //   "Reading(2) is(1) fun(1)."                          3 words, 4 syllables
        //   "Little(2) tables(2) were(1) made(1) by(1) people(2)!" 6 words, 9 syllables
        //   "Are(1) you(1) happy(2)?"                           3 words, 4 syllables
        // 12 words, 3 sentences, 17 syllables.
        // FRE = 206.835 − 1.015·4 − 84.6·17/12 = 206.835 − 4.06 − 119.85 = 82.925 → 82.93
        // FKG = 0.39·4 + 11.8·17/12 − 15.59 = 1.56 + 16.7167 − 15.59 = 2.6867 → 2.69
        let out = analyse_text("Reading is fun. Little tables were made by people! Are you happy?");
        assert_eq!(out["words"], 12);
        assert_eq!(out["sentences"], 3);
        assert_eq!(out["syllables"], 17);
        assert_eq!(out["average_words_per_sentence"], 4.0);
        assert_eq!(out["average_syllables_per_word"], 1.42);
        assert_eq!(out["flesch_reading_ease"], 82.93);
        assert_eq!(out["flesch_kincaid_grade"], 2.69);
    }

    #[test]
    fn syllable_heuristic() {
        let cases = [
            ("the", 1),
            ("cat", 1),
            ("make", 1),
            ("makes", 1),
            ("table", 2),
            ("tables", 2),
            ("little", 2),
            ("whole", 1),
            ("boxes", 2),
            ("wishes", 2),
            ("jumped", 1),
            ("wanted", 2),
            ("happy", 2),
            ("yes", 1),
            ("agree", 2),
            ("beautiful", 3),
            ("readability", 5),
            ("2024", 1),
            ("rhythm", 1),
        ];
        for (word, expected) in cases {
            assert_eq!(count_syllables(word), expected, "{word}");
        }
    }

    #[test]
    fn sentence_splitting() {
        let out = analyse_text("Pi is 3.14 today... Really?! \"Yes.\" See example.com\n\nHeading\nmore text");
        // "Pi is 3.14 today..." | "Really?!" | "\"Yes.\"" | "See example.com" | "Heading more text";
        // 3.14 is one word, example.com two.
        assert_eq!(out["sentences"], 5);
        assert_eq!(out["words"], 12);
        let out = analyse_text("No full stop at the end");
        assert_eq!(out["sentences"], 1);
    }

    #[test]
    fn contractions_and_elisions_are_one_word() {
        // Don't | stop | L'homme | can't | wait
        let out = analyse_text("Don\u{2019}t stop. L'homme can't wait.");
        assert_eq!(out["words"], 5);
    }

    #[test]
    fn no_words_gives_counts_and_null_ratios() {
        let out = analyse_text(" ?! ... ");
        assert_eq!(out["words"], 0);
        assert_eq!(out["sentences"], 0);
        assert_eq!(out["characters"], 8);
        assert_eq!(out["characters_no_spaces"], 5);
        assert!(out["flesch_reading_ease"].is_null());
        assert!(out["average_words_per_sentence"].is_null());
        assert_eq!(out["language"]["code"], "unknown");
        assert_eq!(out["sentiment"]["label"], "neutral");
        assert_eq!(out["key_phrases"], json!([]));
    }

    #[test]
    fn detects_english() {
        let out =
            analyse_text("The weather is nice today and we are going to the park with our friends because it is warm.");
        assert_eq!(out["language"]["code"], "en");
        assert!(out["language"]["confidence"].as_f64().expect("number") > 0.5);
    }

    #[test]
    fn detects_spanish() {
        let out = analyse_text(
            "El perro de mi vecino es muy grande y siempre ladra cuando alguien pasa por la calle. \
             Los niños tienen miedo de él, pero es un perro bueno.",
        );
        assert_eq!(out["language"]["code"], "es");
        assert!(out["language"]["confidence"].as_f64().expect("number") > 0.5);
    }

    #[test]
    fn detects_french() {
        let out = analyse_text(
            "Le chat de ma voisine est très mignon et il dort toute la journée sur le canapé. \
             Nous pensons qu'il est le plus paresseux du quartier.",
        );
        assert_eq!(out["language"]["code"], "fr");
        assert!(out["language"]["confidence"].as_f64().expect("number") > 0.5);
    }

    #[test]
    fn detects_german() {
        let out = analyse_text(
            "Der Hund meines Nachbarn ist sehr groß und er bellt immer, wenn jemand auf der Straße vorbeigeht. \
             Die Kinder haben Angst vor ihm, aber er ist eigentlich ganz lieb.",
        );
        assert_eq!(out["language"]["code"], "de");
        assert!(out["language"]["confidence"].as_f64().expect("number") > 0.5);
    }

    #[test]
    fn too_little_evidence_is_unknown() {
        let out = analyse_text("Kubernetes cluster autoscaling");
        assert_eq!(out["language"], json!({ "code": "unknown", "confidence": 0.0 }));
    }

    #[test]
    fn sentiment_positive() {
        let out = analyse_text("I love this product. It is excellent and the support was wonderful!");
        assert_eq!(
            out["sentiment"],
            json!({ "score": 1.0, "label": "positive", "positive_words": 3, "negative_words": 0 })
        );
    }

    #[test]
    fn sentiment_negative() {
        let out = analyse_text("The service was terrible, the food was awful, but the view was nice.");
        // 1 positive, 2 negative: (1 − 2) / 3 = −0.33
        assert_eq!(out["sentiment"]["score"], -0.33);
        assert_eq!(out["sentiment"]["label"], "negative");
        assert_eq!(out["sentiment"]["positive_words"], 1);
        assert_eq!(out["sentiment"]["negative_words"], 2);
    }

    #[test]
    fn sentiment_negation_flips() {
        let out = analyse_text("The movie was not good.");
        assert_eq!(out["sentiment"]["label"], "negative");
        assert_eq!(out["sentiment"]["negative_words"], 1);
        let out = analyse_text("Honestly, it wasn\u{2019}t a bad deal at all.");
        assert_eq!(out["sentiment"]["label"], "positive");
        // The scope ends at the sentence: "good" in the second sentence is not negated.
        let out = analyse_text("I did not go. The food was good.");
        assert_eq!(out["sentiment"]["positive_words"], 1);
        assert_eq!(out["sentiment"]["negative_words"], 0);
        // Beyond NEGATION_SCOPE words the negator no longer applies.
        let out = analyse_text("Not once in all these years was it good.");
        assert_eq!(out["sentiment"]["label"], "positive");
    }

    #[test]
    fn sentiment_neutral_without_lexicon_words() {
        let out = analyse_text("The report lists the quarterly figures.");
        assert_eq!(
            out["sentiment"],
            json!({ "score": 0.0, "label": "neutral", "positive_words": 0, "negative_words": 0 })
        );
    }

    #[test]
    fn key_phrases_exclude_stopwords_and_rank_by_frequency() {
        let out = analyse_text(
            "Machine learning is changing the world. Machine learning models are everywhere. \
             The models must be tested.",
        );
        // Runs: [machine learning] [changing] [world] | [machine learning models] [everywhere] | [models] [tested].
        // "machine learning" ×2 absorbs "machine" and "learning" (also ×2); "machine learning models" ×1 absorbs
        // "learning models" ×1; "models" ×2 stands alone. Ties are alphabetical.
        assert_eq!(
            phrases(&out),
            ["machine learning", "models", "changing", "everywhere", "machine learning models", "tested", "world"]
        );
        assert_eq!(out["key_phrases"][0], json!({ "phrase": "machine learning", "count": 2 }));
        for phrase in phrases(&out) {
            for word in phrase.split(' ') {
                assert!(!STOPWORDS_EN.contains(&word), "{word} is a stopword");
            }
        }
    }

    #[test]
    fn key_phrases_use_the_detected_language_and_top_n() {
        let out = run(&json!({
            "text": "Le chat noir dort sur le canapé. Le chat noir mange dans la cuisine. Le chat noir est content.",
            "top_phrases": 2
        }))
        .expect("valid");
        assert_eq!(out["language"]["code"], "fr");
        assert_eq!(phrases(&out), ["chat noir", "canapé"]);
    }

    #[test]
    fn output_is_deterministic() {
        let text = "Alpha beta gamma. Beta gamma delta. Gamma delta alpha.";
        assert_eq!(analyse_text(text), analyse_text(text));
    }

    #[test]
    fn oversized_text_is_refused_at_text() {
        let text = "a".repeat(MAX_INPUT_CHARS + 1);
        let err = run(&json!({ "text": text })).expect_err("too long");
        assert_eq!(err.pointer, "/text");
        // Exactly the limit, counted in characters not bytes, is accepted.
        let text = "é".repeat(MAX_INPUT_CHARS);
        assert!(run(&json!({ "text": text })).is_ok());
    }

    #[test]
    fn non_string_or_missing_or_empty_text_is_refused_at_text() {
        for input in [json!({ "text": 42 }), json!({}), json!({ "text": "" }), json!({ "text": null })] {
            assert_eq!(run(&input).expect_err("invalid").pointer, "/text", "{input}");
        }
    }

    #[test]
    fn bad_top_phrases_is_refused() {
        for bad in [json!(0), json!(51), json!(2.5), json!("3"), json!(-1)] {
            let err = run(&json!({ "text": "hello", "top_phrases": bad })).expect_err("invalid");
            assert_eq!(err.pointer, "/top_phrases");
        }
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = run(&json!({ "text": "hello", "lang": "en" })).expect_err("unknown");
        assert_eq!(err.pointer, "/lang");
        let err = run(&json!("just a string")).expect_err("not an object");
        assert_eq!(err.pointer, "");
    }

    #[test]
    fn schema_matches_limits() {
        let schema = input_schema();
        assert_eq!(schema["properties"]["text"]["maxLength"], MAX_INPUT_CHARS);
        assert_eq!(schema["properties"]["top_phrases"]["maximum"], MAX_TOP_PHRASES);
        assert_eq!(schema["additionalProperties"], false);
        let mut fields: Vec<&str> =
            schema["properties"].as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, FIELDS);
    }

    #[test]
    fn word_lists_are_sound() {
        for list in [POSITIVE_WORDS, NEGATIVE_WORDS] {
            assert!((60..=100).contains(&list.len()));
        }
        for list in [STOPWORDS_EN, STOPWORDS_ES, STOPWORDS_FR, STOPWORDS_DE] {
            assert!(list.len() >= 40);
        }
        for list in [POSITIVE_WORDS, NEGATIVE_WORDS, STOPWORDS_EN, STOPWORDS_ES, STOPWORDS_FR, STOPWORDS_DE, NEGATORS] {
            for word in list {
                assert_eq!(*word, word.to_lowercase(), "lists are lowercase");
            }
        }
        assert!(POSITIVE_WORDS.iter().all(|w| !NEGATIVE_WORDS.contains(w)));
    }
}
