//! A cap on Argon2id verifications running at once.
//!
//! Each verification holds about 19 MiB (the OWASP parameters in [`super::secret`]) on a blocking thread, and
//! Tokio's blocking pool grows to hundreds of threads: 64 token requests for clients with operator-chosen secrets
//! would need over a gigabyte, far past a container's memory limit. A few slots keep memory bounded; a request
//! that finds none free waits briefly (the slots are handed out in arrival order) and is then refused, so the
//! caller answers 503 and the client retries instead of the process being OOM-killed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::secret;

/// Why a secret could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Every slot stayed taken for the whole wait.
    #[error("every argon2 verification slot is busy")]
    Busy,
    /// The blocking task running the hash failed.
    #[error("secret verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The slots, shared by every request. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Argon2Slots {
    semaphore: Arc<Semaphore>,
    wait: Duration,
}

impl Argon2Slots {
    /// `slots` verifications at once (at least one); a request waits at most `wait` for one.
    pub fn new(slots: usize, wait: Duration) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    /// A slot, held until the permit is dropped, or [`VerifyError::Busy`] after the wait.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, VerifyError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one would mean no slot will ever free up.
            Ok(Err(_)) | Err(_) => Err(VerifyError::Busy),
        }
    }

    /// Whether `secret` matches `stored` ([`secret::verify`]), off the async workers. Only memory-hard forms take
    /// a slot: a generated secret's SHA-256 form is checked at once, even when every slot is busy.
    pub async fn verify(&self, secret: String, stored: String) -> Result<bool, VerifyError> {
        if !secret::is_memory_hard(&stored) {
            return Ok(secret::verify(&secret, &stored));
        }
        let permit = self.acquire().await?;
        let matches = tokio::task::spawn_blocking(move || {
            let matches = secret::verify(&secret, &stored);
            drop(permit);
            matches
        })
        .await?;
        Ok(matches)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_full_set_of_slots_refuses_argon2_after_the_wait_but_not_sha256() {
        let slots = Argon2Slots::new(1, Duration::from_millis(150));
        let chosen = secret::hash_chosen("a chosen secret").unwrap();
        let generated = secret::generate();
        let fast = secret::hash_generated(&generated);

        let held = slots.acquire().await.unwrap();
        let asked = Instant::now();
        let refused = slots
            .verify("a chosen secret".to_owned(), chosen.clone())
            .await;
        assert!(matches!(refused, Err(VerifyError::Busy)), "{refused:?}");
        assert!(asked.elapsed() >= Duration::from_millis(150));
        // The SHA-256 form of a generated secret needs no slot.
        assert!(slots.verify(generated, fast).await.unwrap());

        drop(held);
        assert!(slots
            .verify("a chosen secret".to_owned(), chosen.clone())
            .await
            .unwrap());
        assert!(!slots.verify("wrong".to_owned(), chosen).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_slots_run_at_once_and_waiters_are_served_when_one_frees() {
        let slots = Argon2Slots::new(2, Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (slots, running, most) =
                    (slots.clone(), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    let _permit = slots.acquire().await.unwrap();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
