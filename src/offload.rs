//! Work that must leave the async runtime's threads: sled reads wait while
//! another thread applies a batch, and a slow read on a runtime thread
//! stalls every peer's timers. [`spawn_blocking`] runs such work on the
//! blocking pool and marks the thread, so that in debug builds (the
//! tests') the store refuses any call made on a runtime thread
//! ([`check_thread`]).

use std::cell::Cell;

thread_local! {
    static ON_BLOCKING_POOL: Cell<bool> = const { Cell::new(false) };
}

/// `tokio::task::spawn_blocking`, with the thread marked as off the async
/// threads while `f` runs.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let before = ON_BLOCKING_POOL.replace(true);
        let result = f();
        ON_BLOCKING_POOL.set(before);
        result
    })
}

/// Whether this thread is one of an async runtime's, outside
/// [`spawn_blocking`].
pub fn on_async_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok() && !ON_BLOCKING_POOL.get()
}

/// In debug builds, stop the process when the store is called on an
/// async runtime thread, naming the caller: the tests run every node in a
/// debug build, so a call that slipped onto the runtime fails them.
#[track_caller]
#[inline]
pub fn check_thread() {
    #[cfg(debug_assertions)]
    if on_async_thread() {
        eprintln!(
            "bug: a store call on an async runtime thread, at {}; run it with \
             offload::spawn_blocking\n{}",
            std::panic::Location::caller(),
            std::backtrace::Backtrace::force_capture()
        );
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runtimes_own_threads_count_as_async() {
        assert!(!on_async_thread(), "a plain thread");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(on_async_thread(), "a task on a worker");
            assert!(!spawn_blocking(on_async_thread).await.unwrap());
            // The mark does not outlive the work.
            assert!(tokio::task::spawn_blocking(on_async_thread).await.unwrap());
        });
    }
}
