//! Many readers, few MLflow calls: identical reads made at the same time
//! share one request, and an answer serves the same read again for a short
//! while. Any write Slipway makes to MLflow, and any webhook delivery, drops
//! every answer kept, so Slipway's own changes show at once; changes made
//! elsewhere show within `fresh_for`. A page shows how old its data is:
//! [`with_age`] reports when the oldest answer it used was asked for.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::OnceCell;

use super::error::MlflowError;

/// Past this many answers kept, stale ones are swept on the next insert:
/// memory stays bounded by what was read within `fresh_for`.
const SWEEP_ABOVE: usize = 256;

pub struct ReadCache {
    fresh_for: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every invalidation; an answer from before is not served.
    generation: u64,
    answers: HashMap<String, Arc<Answer>>,
}

/// One read's answer: being fetched (waiters share the fetch), or fetched.
struct Answer {
    generation: u64,
    asked: Instant,
    cell: OnceCell<Result<Bytes, MlflowError>>,
}

impl ReadCache {
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            fresh_for,
            state: Mutex::default(),
        }
    }

    /// The answer to the read `key`: one in flight or still fresh, else the
    /// one `fetch` gets. A failure is shared with those waiting on the same
    /// fetch, never kept for later readers.
    pub async fn get_or_fetch<F, Fut>(&self, key: String, fetch: F) -> Result<Bytes, MlflowError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, MlflowError>>,
    {
        let answer = {
            let mut state = self.state.lock().expect("read cache");
            let generation = state.generation;
            match state.answers.get(&key) {
                Some(answer) if self.is_fresh(answer, generation) => answer.clone(),
                _ => {
                    if state.answers.len() >= SWEEP_ABOVE {
                        state
                            .answers
                            .retain(|_, answer| self.is_fresh(answer, generation));
                    }
                    let answer = Arc::new(Answer {
                        generation,
                        asked: Instant::now(),
                        cell: OnceCell::new(),
                    });
                    state.answers.insert(key.clone(), answer.clone());
                    answer
                }
            }
        };
        let result = answer.cell.get_or_init(fetch).await.clone();
        if result.is_ok() {
            // Outside `with_age` nobody asks how old the answer is.
            let _ = OLDEST_ANSWER.try_with(|oldest| {
                if oldest.get().is_none_or(|seen| answer.asked < seen) {
                    oldest.set(Some(answer.asked));
                }
            });
        }
        if result.is_err() {
            let mut state = self.state.lock().expect("read cache");
            if state
                .answers
                .get(&key)
                .is_some_and(|kept| Arc::ptr_eq(kept, &answer))
            {
                state.answers.remove(&key);
            }
        }
        result
    }

    /// Drops every answer kept: MLflow has changed.
    pub fn invalidate(&self) {
        let mut state = self.state.lock().expect("read cache");
        state.generation += 1;
        state.answers.clear();
    }

    /// From since the last change Slipway knows of, and still being fetched
    /// (so joining it costs nothing) or fetched within `fresh_for`.
    fn is_fresh(&self, answer: &Answer, generation: u64) -> bool {
        answer.generation == generation
            && (!answer.cell.initialized() || answer.asked.elapsed() < self.fresh_for)
    }
}

tokio::task_local! {
    static OLDEST_ANSWER: Cell<Option<Instant>>;
}

/// Runs `read` and says how current its data is: the time the oldest answer
/// it was given was asked of MLflow (now, if it read nothing cached).
pub async fn with_age<T>(read: impl Future<Output = T>) -> (T, SystemTime) {
    let (output, oldest) = OLDEST_ANSWER
        .scope(Cell::new(None), async {
            let output = read.await;
            (output, OLDEST_ANSWER.with(Cell::get))
        })
        .await;
    let as_of = match oldest {
        Some(asked) => SystemTime::now() - asked.elapsed(),
        None => SystemTime::now(),
    };
    (output, as_of)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(
        calls: Arc<AtomicUsize>,
        answer: Result<&'static str, ()>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, MlflowError>> + Send>>
    {
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer
                    .map(|text| Bytes::from_static(text.as_bytes()))
                    .map_err(|()| MlflowError::NoAnswer {
                        url: "http://mlflow".into(),
                        seconds: 1,
                    })
            })
        }
    }

    #[tokio::test]
    async fn identical_reads_at_once_share_one_fetch_and_a_fresh_answer_is_reused() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                let fetch = counting(calls.clone(), Ok("models"));
                tokio::spawn(async move { cache.get_or_fetch("k".into(), fetch).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap(), "models");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache
            .get_or_fetch("k".into(), counting(calls.clone(), Ok("models")))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "still fresh");
        cache
            .get_or_fetch("other".into(), counting(calls.clone(), Ok("runs")))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another read is fetched");
    }

    #[tokio::test]
    async fn a_write_or_age_makes_the_next_read_fetch_again_and_failures_are_not_kept() {
        let cache = ReadCache::new(Duration::from_millis(200));
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_fetch("k".into(), counting(calls.clone(), Ok("a")))
            .await
            .unwrap();
        cache.invalidate();
        let again = cache
            .get_or_fetch("k".into(), counting(calls.clone(), Ok("b")))
            .await
            .unwrap();
        assert_eq!(
            (again.as_ref(), calls.load(Ordering::SeqCst)),
            (b"b".as_slice(), 2)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        cache
            .get_or_fetch("k".into(), counting(calls.clone(), Ok("c")))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "stale");

        assert!(
            cache
                .get_or_fetch("e".into(), counting(calls.clone(), Err(())))
                .await
                .is_err()
        );
        let recovered = cache
            .get_or_fetch("e".into(), counting(calls.clone(), Ok("back")))
            .await
            .unwrap();
        assert_eq!(recovered, "back");
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_read_reports_the_age_of_the_oldest_answer_it_was_given() {
        let cache = ReadCache::new(Duration::from_secs(60));
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_fetch("old".into(), counting(calls.clone(), Ok("a")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = SystemTime::now();
        let (_, as_of) = with_age(async {
            cache
                .get_or_fetch("new".into(), counting(calls.clone(), Ok("b")))
                .await
                .unwrap();
            cache
                .get_or_fetch("old".into(), counting(calls.clone(), Ok("a")))
                .await
                .unwrap();
        })
        .await;
        let age = started.duration_since(as_of).expect("as_of is in the past");
        assert!(age >= Duration::from_millis(300), "{age:?}");
        assert!(age < Duration::from_secs(5), "{age:?}");

        let before = SystemTime::now();
        let (_, fresh) = with_age(async {
            cache
                .get_or_fetch("newer".into(), counting(calls.clone(), Ok("c")))
                .await
                .unwrap();
        })
        .await;
        let lag = before.duration_since(fresh).unwrap_or_default();
        assert!(
            lag < Duration::from_millis(50),
            "a fresh fetch is as of the request: {lag:?}"
        );
    }
}
