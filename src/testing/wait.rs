//! Polling a condition until a deadline — never a bare sleep as synchronisation.

use std::time::{Duration, Instant};

/// Polls `check` every `interval` until it returns `Some`, or fails after
/// `timeout` with a message naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let interval = Duration::from_millis(50);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(interval);
    }
}

/// The async form of [`wait_until`].
pub async fn wait_until_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let v = wait_until("third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(v, Ok(3));
    }

    #[test]
    fn times_out_naming_what_it_waited_for() {
        let err = wait_until::<()>("never", Duration::from_millis(120), || None).unwrap_err();
        assert!(err.contains("waiting for never"), "{err}");
    }
}
