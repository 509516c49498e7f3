//! `--waves 1,10%,50%,100%` and `--canary N`: how many of the tenants that change each wave
//! reaches, as cumulative counts or percentages.

use std::fmt;
use std::str::FromStr;

use super::RolloutError;

/// One step: all tenants up to a count, or up to a share of those that change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Count(u64),
    Percent(u32),
}

/// The waves of a rollout, as the operator gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavePlan {
    steps: Vec<Step>,
}

impl Default for WavePlan {
    /// A canary of one tenant, then 10%, 50% and 100%.
    fn default() -> Self {
        WavePlan {
            steps: vec![
                Step::Count(1),
                Step::Percent(10),
                Step::Percent(50),
                Step::Percent(100),
            ],
        }
    }
}

impl WavePlan {
    /// `--canary N` and `--waves LIST` together: the canary is a first wave of N tenants,
    /// before the list (default 10%, 50%, 100%). Neither: the defaults.
    pub fn of(canary: Option<u64>, waves: Option<WavePlan>) -> Result<WavePlan, RolloutError> {
        let rest = waves.unwrap_or_else(|| WavePlan {
            steps: WavePlan::default().steps[1..].to_vec(),
        });
        let Some(n) = canary else {
            return Ok(if rest == Self::tail() {
                WavePlan::default()
            } else {
                rest
            });
        };
        if n == 0 {
            return Err(RolloutError::BadWaves("--canary must be at least 1".into()));
        }
        let mut steps = vec![Step::Count(n)];
        steps.extend(rest.steps);
        Ok(WavePlan { steps })
    }

    fn tail() -> WavePlan {
        WavePlan {
            steps: WavePlan::default().steps[1..].to_vec(),
        }
    }

    /// How many tenants each wave commits when `total` change: cumulative targets, each
    /// wave at least one tenant more than the last, the last wave reaching every tenant.
    pub fn sizes(&self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut reached = 0usize;
        for step in &self.steps {
            let target = match *step {
                Step::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Step::Percent(p) => (total * p as usize).div_ceil(100),
            }
            .min(total);
            if target > reached {
                sizes.push(target - reached);
                reached = target;
            }
        }
        if reached < total {
            sizes.push(total - reached);
        }
        sizes
    }
}

impl FromStr for WavePlan {
    type Err = RolloutError;

    fn from_str(text: &str) -> Result<Self, RolloutError> {
        let bad = |why: &str| RolloutError::BadWaves(format!("{text:?}: {why}"));
        let mut steps = Vec::new();
        for part in text.split(',').map(str::trim) {
            let step = match part.strip_suffix('%') {
                Some(p) => match p.trim().parse::<u32>() {
                    Ok(p) if (1..=100).contains(&p) => Step::Percent(p),
                    _ => return Err(bad("a percentage is 1% to 100%")),
                },
                None => match part.parse::<u64>() {
                    Ok(n) if n > 0 => Step::Count(n),
                    _ => return Err(bad("each wave is a count (1, 5) or a percentage (10%)")),
                },
            };
            steps.push(step);
        }
        Ok(WavePlan { steps })
    }
}

impl fmt::Display for WavePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Count(n) => n.to_string(),
                Step::Percent(p) => format!("{p}%"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_a_canary_then_ten_fifty_and_a_hundred_percent() {
        let plan = WavePlan::of(None, None).unwrap();
        assert_eq!(plan.to_string(), "1,10%,50%,100%");
        assert_eq!(plan.sizes(200), [1, 19, 80, 100]);
        assert_eq!(plan.sizes(3), [1, 1, 1]);
        assert_eq!(plan.sizes(1), [1]);
        assert!(plan.sizes(0).is_empty());
    }

    #[test]
    fn counts_and_percentages_are_cumulative_and_the_last_wave_takes_the_rest() {
        let plan: WavePlan = "5, 25%".parse().unwrap();
        assert_eq!(plan.sizes(100), [5, 20, 75]);
        let canary = WavePlan::of(Some(3), Some(plan)).unwrap();
        assert_eq!(canary.to_string(), "3,5,25%");
        assert_eq!(canary.sizes(100), [3, 2, 20, 75]);
        assert_eq!(
            WavePlan::of(Some(2), None).unwrap().sizes(200),
            [2, 18, 80, 100]
        );
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        for bad in ["", "0", "10%,x", "150%", "-1", "0%"] {
            let err = bad.parse::<WavePlan>().unwrap_err().to_string();
            assert!(err.starts_with("invalid --waves"), "{bad}: {err}");
        }
        assert!(WavePlan::of(Some(0), None).is_err());
    }
}
