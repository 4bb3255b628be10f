//! `within`: a future with a deadline on a shard's glommio timer.

use std::future::Future;
use std::time::Duration;

/// `Some` of what `f` gives if it finishes within `limit`, `None` if the
/// time runs out first (then `f` is dropped, cancelling it). Must run on a
/// glommio executor (a shard): the timer is the shard's.
///
/// ```
/// use std::time::Duration;
///
/// use gatrix_chat::within::within;
///
/// glommio::LocalExecutor::default().run(async {
///     assert_eq!(within(Duration::from_secs(5), async { 42 }).await, Some(42));
///     let never = std::future::pending::<u8>();
///     assert_eq!(within(Duration::from_millis(10), never).await, None);
/// });
/// ```
pub async fn within<F: Future>(limit: Duration, f: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_that_finishes_in_time_gives_its_output_else_none() {
        glommio::LocalExecutor::default().run(async {
            assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
            let never = std::future::pending::<u8>();
            assert_eq!(within(Duration::from_millis(10), never).await, None);
        });
    }
}
