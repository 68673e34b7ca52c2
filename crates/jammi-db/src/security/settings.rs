//! Settings a session may change with `SET` (the engine's own, kept on the session handle):
//! today `idle_in_transaction_timeout`, the longest a transaction may sit idle before it is
//! rolled back. DataFusion's settings are not per session in jammi-db; `SET` of those is
//! the operator's (see [`super::policy`]).

use std::time::Duration;

use datafusion::sql::sqlparser::ast::{Expr, Set, Value};

use super::Access;
use crate::error::{Error, Result};

/// The name a `SET` statement assigns (lower case), when it assigns one variable.
pub fn setting_name(set: &Set) -> Option<String> {
    match set {
        Set::SingleAssignment { variable, .. } => Some(variable.to_string().to_ascii_lowercase()),
        _ => None,
    }
}

/// A `SET` of one of the engine's session settings, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSetting {
    /// `SET idle_in_transaction_timeout = 5000 | '5s' | '500ms' | '1min' | 0` (0: never).
    IdleInTransactionTimeout(Option<Duration>),
}

/// `set` as an engine session setting; `None` when it sets something else.
pub fn parse_session_setting(set: &Set) -> Option<Result<SessionSetting>> {
    let Set::SingleAssignment { variable, values, .. } = set else { return None };
    let name = variable.to_string().to_ascii_lowercase();
    if name != "idle_in_transaction_timeout" {
        return None;
    }
    let text = match values.as_slice() {
        [Expr::Value(v)] => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            _ => return Some(Err(bad_duration(&v.to_string()))),
        },
        [other] => return Some(Err(bad_duration(&other.to_string()))),
        _ => return Some(Err(bad_duration("(several values)"))),
    };
    Some(parse_duration(&text).map(|d| SessionSetting::IdleInTransactionTimeout((!d.is_zero()).then_some(d))))
}

fn bad_duration(input: &str) -> Error {
    Error::invalid("idle_in_transaction_timeout", format!(
        "invalid value {input} for idle_in_transaction_timeout: give milliseconds (5000) or a duration such as '5s', '500ms' or '1min' (0 turns it off)"
    ))
}

/// `5000` (ms), `'5s'`, `'500ms'`, `'1min'`, `'2h'`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad_duration(text))?;
    let ms = match unit.trim() {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| bad_duration(text))?;
    Ok(Duration::from_millis(ms))
}

/// The engine settings of one session handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Roll back a transaction idle this long (`None`: never).
    pub idle_in_transaction_timeout: Option<Duration>,
}

impl SessionSettings {
    /// A new session's settings: the configured ones.
    pub fn from_config(config: &crate::config::SecurityConfig) -> Self {
        SessionSettings { idle_in_transaction_timeout: config.idle_in_transaction_timeout() }
    }

    /// Apply `setting` as `access` may: a restricted caller may shorten the configured idle
    /// timeout, never lengthen or turn it off (that would let it hold locks again).
    pub fn apply(&mut self, setting: SessionSetting, access: Access, configured: Option<Duration>) -> Result<()> {
        match setting {
            SessionSetting::IdleInTransactionTimeout(wanted) => {
                if access == Access::Restricted {
                    if let Some(limit) = configured {
                        if wanted.is_none_or(|w| w > limit) {
                            return Err(Error::PermissionDenied {
                                message: format!(
                                    "idle_in_transaction_timeout may be at most {} ms for this caller (the server's setting); it can be shortened, not lengthened or turned off",
                                    limit.as_millis()
                                ),
                            });
                        }
                    }
                }
                self.idle_in_transaction_timeout = wanted;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_form() {
        assert_eq!(parse_duration("5000").unwrap(), Duration::from_millis(5000));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration(" 250ms ").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "5 parsecs", "-1", "99999999999999999999h", "18446744073709551615h"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("idle_in_transaction_timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn restricted_callers_only_shorten_the_timeout() {
        let configured = Some(Duration::from_secs(10));
        let mut s = SessionSettings { idle_in_transaction_timeout: configured };
        s.apply(SessionSetting::IdleInTransactionTimeout(Some(Duration::from_secs(2))), Access::Restricted, configured).unwrap();
        assert_eq!(s.idle_in_transaction_timeout, Some(Duration::from_secs(2)));
        for wanted in [None, Some(Duration::from_secs(60))] {
            let err = s.apply(SessionSetting::IdleInTransactionTimeout(wanted), Access::Restricted, configured).unwrap_err();
            assert!(err.to_string().contains("at most 10000 ms"), "{err}");
        }
        s.apply(SessionSetting::IdleInTransactionTimeout(None), Access::Operator, configured).unwrap();
        assert_eq!(s.idle_in_transaction_timeout, None);
    }
}
