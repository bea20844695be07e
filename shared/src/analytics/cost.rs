//! What a window of requests would cost on each platform, from counted invocations and their measured durations.
//! Prices are configuration with the date they were read off the price lists (`CLOUD_AGENT_PRICE_*`), never
//! hidden constants: the answer carries that date, so a stale table shows.

use std::time::Duration;

/// One platform's prices and the function memory they apply to.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    /// When these prices were read off the price lists (`YYYY-MM-DD`).
    pub as_of: String,
    /// AWS Lambda, arm64: USD per GB-second and per million requests; the functions' memory (template.yaml).
    pub lambda_gb_second: f64,
    pub lambda_per_million: f64,
    pub lambda_memory_mb: u32,
    /// Vercel fluid compute: USD per active-CPU hour, per GB-hour of provisioned memory, per million
    /// invocations; the functions' memory (vercel.json).
    pub vercel_cpu_hour: f64,
    pub vercel_gb_hour: f64,
    pub vercel_per_million: f64,
    pub vercel_memory_mb: u32,
}

impl Default for PriceTable {
    /// us-east-1 / iad1 list prices checked 2026-12 (free tiers and included usage not deducted).
    fn default() -> Self {
        Self {
            as_of: "2026-12-01".into(),
            lambda_gb_second: 0.000_013_333_4,
            lambda_per_million: 0.20,
            lambda_memory_mb: 256,
            vercel_cpu_hour: 0.128,
            vercel_gb_hour: 0.0106,
            vercel_per_million: 0.60,
            vercel_memory_mb: 1024,
        }
    }
}

/// What was served in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub invocations: u64,
    /// The requests' summed durations.
    pub busy: Duration,
}

/// One platform's estimate, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Lambda: GB-seconds × price. Vercel: active CPU + provisioned memory.
    pub compute: f64,
    pub requests: f64,
    pub total: f64,
}

impl PriceTable {
    /// Lambda bills memory × duration (rounded up to the millisecond per invocation: durations are whole
    /// milliseconds already) and each request.
    pub fn lambda(&self, usage: Usage) -> Estimate {
        let gb_seconds = f64::from(self.lambda_memory_mb) / 1024.0 * usage.busy.as_secs_f64();
        let compute = gb_seconds * self.lambda_gb_second;
        let requests = usage.invocations as f64 / 1e6 * self.lambda_per_million;
        Estimate { compute, requests, total: compute + requests }
    }

    /// Vercel bills active CPU (taken here as the whole duration: an upper bound, since time spent waiting on
    /// I/O is not billed), provisioned memory for the same time, and invocations.
    pub fn vercel(&self, usage: Usage) -> Estimate {
        let hours = usage.busy.as_secs_f64() / 3600.0;
        let compute =
            hours * self.vercel_cpu_hour + f64::from(self.vercel_memory_mb) / 1024.0 * hours * self.vercel_gb_hour;
        let requests = usage.invocations as f64 / 1e6 * self.vercel_per_million;
        Estimate { compute, requests, total: compute + requests }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computation() {
        let prices = PriceTable::default();
        // Two million requests of 120 ms each: 240 000 s busy.
        let usage = Usage { invocations: 2_000_000, busy: Duration::from_mins(4000) };
        // Lambda: 0.25 GB × 240 000 s = 60 000 GB-s × $0.0000133334 = $0.800004; requests 2 × $0.20 = $0.40.
        let lambda = prices.lambda(usage);
        assert!((lambda.compute - 0.800_004).abs() < 1e-9, "{lambda:?}");
        assert!((lambda.requests - 0.40).abs() < 1e-12);
        assert!((lambda.total - 1.200_004).abs() < 1e-9);
        // Vercel: 66.667 h × $0.128 = $8.5333; 1 GB × 66.667 h × $0.0106 = $0.70667; 2 × $0.60 = $1.20.
        let vercel = prices.vercel(usage);
        let hours = 240_000.0 / 3600.0;
        assert!((vercel.compute - (hours * 0.128 + hours * 0.0106)).abs() < 1e-9, "{vercel:?}");
        assert!((vercel.compute - 9.24).abs() < 1e-9, "{vercel:?}");
        assert!((vercel.total - 10.44).abs() < 1e-9);
    }
}
