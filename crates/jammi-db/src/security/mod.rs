//! Security: what each caller may run ([`policy`]), the session settings it may change
//! ([`settings`]), and the bounds on every client-controlled input ([`limits`]).
//!
//! Who is restricted: every request through the server (`Session::restricted`), every
//! tenant-bound session, and the operator too when `[security] operator_locations = false`.

pub mod limits;
pub mod policy;
pub mod settings;

pub use policy::{check_plan, check_statement, redact_plan_text, Access};
pub use settings::{SessionSetting, SessionSettings};
