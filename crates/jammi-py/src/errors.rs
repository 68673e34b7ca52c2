//! The engine's errors as typed Python exceptions: one class per [`ErrorClass`], all
//! subclasses of `jammi.Error`, carrying the engine's message.

use jammi_db::error::ErrorClass;
use pyo3::create_exception;
use pyo3::prelude::*;

create_exception!(_jammi, Error, pyo3::exceptions::PyException, "Any error jammi-db reports.");
create_exception!(_jammi, NotFound, Error, "What the call names does not exist.");
create_exception!(_jammi, InvalidArgument, Error, "The input is wrong: SQL, options, values, arguments.");
create_exception!(_jammi, Conflict, Error, "The call collides with the current state (exists already, a concurrent change, a transaction in the wrong state); retrying may succeed.");
create_exception!(_jammi, PermissionDenied, Error, "This tenant may not do this.");
create_exception!(_jammi, Unavailable, Error, "A backend (catalog, broker, object store) cannot be reached now.");
create_exception!(_jammi, Timeout, Error, "An operation ran out of time.");
create_exception!(_jammi, InternalError, Error, "The engine or its storage failed.");

/// The exception for `e`.
pub(crate) fn to_py(e: jammi_db::Error) -> PyErr {
    let message = e.to_string();
    match e.class() {
        ErrorClass::NotFound => NotFound::new_err(message),
        ErrorClass::InvalidArgument => InvalidArgument::new_err(message),
        ErrorClass::Conflict => Conflict::new_err(message),
        ErrorClass::PermissionDenied => PermissionDenied::new_err(message),
        ErrorClass::Unavailable => Unavailable::new_err(message),
        ErrorClass::Timeout => Timeout::new_err(message),
        ErrorClass::Internal => InternalError::new_err(message),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
