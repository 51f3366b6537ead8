//! Futures that a connection waits on beside its traffic (drain signals, timers, the
//! rapid-reset alarm) polled only when they were woken.
//!
//! `tokio::select!` polls every branch each time the task wakes. A connection task wakes
//! twice per proxied request, and its signal futures (a `watch` wait, a `Notify`, an interval)
//! would each be polled every time, although they almost never fire. [`WhenWoken`] gives its
//! future a waker of its own and polls it again only after that waker fired.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// The waker handed to the inner future: it marks the future woken and wakes the task.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project_lite::pin_project! {
    /// `inner`, polled on the first poll and then only after it asked to be woken.
    pub(crate) struct WhenWoken<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        waker: Option<Waker>,
    }
}

impl<F> WhenWoken<F> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner,
            flag: Arc::default(),
            waker: None,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.flag.task.register(cx.waker());
        let first = this.waker.is_none();
        if !first && !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = this
            .waker
            .get_or_insert_with(|| Waker::from(this.flag.clone()));
        this.inner.poll(&mut Context::from_waker(waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and is ready once `ready` is set, waking through the
    /// waker it was last polled with.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[derive(Default)]
    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn polls_the_inner_future_only_after_it_was_woken() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(std::sync::Mutex::new(None));
        let mut f = Box::pin(WhenWoken::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: inner_waker.clone(),
        }));
        let task = Arc::new(CountWakes::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(f.as_mut().poll(&mut cx).is_pending());
        // The task wakes for other reasons: the inner future is not polled again.
        for _ in 0..10 {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        // The inner future's waker fires: the task is woken, and the next poll reaches it.
        ready.store(true, Ordering::Relaxed);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
        assert!(f.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn works_with_tokio_signals_in_select() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let n = notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            n.notify_one();
        });
        let mut ticks = 0;
        let mut interval = tokio::time::interval(std::time::Duration::from_millis(5));
        loop {
            tokio::select! {
                _ = WhenWoken::new(notify.notified()) => break,
                _ = WhenWoken::new(interval.tick()) => ticks += 1,
            }
        }
        assert!(ticks >= 2, "{ticks}");
    }
}
