//! arrow-rs panics on some damaged files instead of returning an error (a column chunk said to
//! start before the file, an offset past a buffer, found by fuzzing `dpov2 pair`). Such a panic
//! becomes an [`Error::Damaged`] here, and prints nothing: a user's damaged file is one line
//! naming it, not a Rust backtrace.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::Error;

thread_local! {
    /// Set while this thread runs [`unless_panic`]: its panics are caught, so not printed.
    static CAUGHT: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// `read()`, or the panic it raised as an error.
pub(crate) fn unless_panic<T>(read: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAUGHT.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = CAUGHT.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(read));
    CAUGHT.set(outer);
    result.unwrap_or_else(|payload| Err(Error::Damaged(message(&*payload))))
}

fn message(payload: &(dyn Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a damaged page or footer".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_with_its_message_and_other_results_pass() {
        let err = unless_panic::<()>(|| panic!("offset + len out of bounds")).unwrap_err();
        assert!(matches!(&err, Error::Damaged(m) if m == "offset + len out of bounds"));
        assert_eq!(unless_panic(|| Ok(3)).unwrap(), 3);
        assert!(matches!(
            unless_panic::<()>(|| Err(Error::NoColumn("x".into()))),
            Err(Error::NoColumn(_))
        ));
    }
}
