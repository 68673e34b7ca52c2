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
    /// `SET ephemeral_session = on | '10min' | off` (also written `BEGIN EPHEMERAL [TIMEOUT
    /// '10min']` and `END EPHEMERAL`): make this session ephemeral, with the configured or
    /// the given idle timeout; `off` closes it, dropping its tables. Run by the session.
    EphemeralSession(Option<Option<Duration>>),
}

/// `set` as an engine session setting; `None` when it sets something else.
pub fn parse_session_setting(set: &Set) -> Option<Result<SessionSetting>> {
    let Set::SingleAssignment { variable, values, .. } = set else { return None };
    let name = variable.to_string().to_ascii_lowercase();
    if name == "ephemeral_session" {
        return Some(parse_ephemeral(values));
    }
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

fn parse_ephemeral(values: &[Expr]) -> Result<SessionSetting> {
    let bad = |input: &str| {
        Error::invalid("ephemeral_session", format!("invalid value {input} for ephemeral_session: give on, off, or an idle timeout such as '10min', '30s' or 60000 (ms)"))
    };
    let text = match values {
        [Expr::Value(v)] => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Boolean(b) => b.to_string(),
            _ => return Err(bad(&v.to_string())),
        },
        [Expr::Identifier(id)] => id.value.clone(),
        [other] => return Err(bad(&other.to_string())),
        _ => return Err(bad("(several values)")),
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "default" => Ok(SessionSetting::EphemeralSession(Some(None))),
        "off" | "false" => Ok(SessionSetting::EphemeralSession(None)),
        _ => match parse_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(SessionSetting::EphemeralSession(Some(Some(d)))),
            Ok(_) => Ok(SessionSetting::EphemeralSession(None)),
            Err(_) => Err(bad(&text)),
        },
    }
}

/// `BEGIN EPHEMERAL [TIMEOUT t]` and `END EPHEMERAL` as the `SET ephemeral_session`
/// statement they stand for (SQL has no syntax of its own for them); `None` for other text.
pub fn ephemeral_statement(sql: &str) -> Option<String> {
    let text = sql.trim().trim_end_matches(';').trim();
    // At most four words matter; a longer statement (a search with a long vector) is not
    // split any further than that.
    let words: Vec<&str> = text.split_whitespace().take(5).collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if words.len() == 2 && is(0, "end") && is(1, "ephemeral") {
        return Some("SET ephemeral_session = off".into());
    }
    if !(is(0, "begin") && is(1, "ephemeral")) {
        return None;
    }
    match words.len() {
        2 => Some("SET ephemeral_session = on".into()),
        4 if is(2, "timeout") => {
            let value = words[3].trim_matches('\'');
            value.chars().all(|c| c.is_ascii_alphanumeric()).then(|| format!("SET ephemeral_session = '{value}'"))
        }
        _ => None,
    }
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
        "d" => n.checked_mul(86_400_000),
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
            SessionSetting::EphemeralSession(_) => Err(Error::internal("ephemeral_session is run by the session, not kept in its settings")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_and_end_ephemeral_stand_for_the_setting() {
        assert_eq!(ephemeral_statement("begin ephemeral").as_deref(), Some("SET ephemeral_session = on"));
        assert_eq!(ephemeral_statement(" BEGIN EPHEMERAL TIMEOUT '10min'; ").as_deref(), Some("SET ephemeral_session = '10min'"));
        assert_eq!(ephemeral_statement("END EPHEMERAL").as_deref(), Some("SET ephemeral_session = off"));
        assert_eq!(ephemeral_statement("BEGIN EPHEMERAL TIMEOUT '1'; DROP TABLE x"), None);
        assert_eq!(ephemeral_statement("BEGIN"), None);
    }

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
