//! The schedule of a service's observer, as GOST's service runs it:
//! every status change is reported at once; with `enableStats`, the
//! counters are reported every `observer.period` (default 5s, at least 1s)
//! but only when they changed since the last report; a report that fails
//! is sent again next period before anything new; `observer.resetTraffic`
//! reports byte counts since the previous report instead of totals.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::{Event, Observer, SinkSlot, StatsEvent};
use crate::status::{State, Status};
use gost_core::metadata::{Metadata, MetadataError};
use gost_core::stats::Stats;

pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
pub const MIN_PERIOD: Duration = Duration::from_secs(1);

pub struct Reporter {
    observer: Arc<SinkSlot>,
    period: Duration,
    reset_traffic: bool,
}

impl Reporter {
    /// Reads `observer.period` (or GOST's other spellings `observePeriod`,
    /// `observer.observePeriod`) and
    /// `observer.resetTraffic` from the service's metadata.
    pub fn from_metadata(
        observer: Arc<dyn Observer>,
        md: &Metadata,
    ) -> Result<Self, MetadataError> {
        let mut period = None;
        for key in ["observer.period", "observePeriod", "observer.observePeriod"] {
            if period.is_none() {
                period = md.get_duration(key)?;
            }
        }
        let period = match period {
            None => DEFAULT_PERIOD,
            Some(p) if p.is_zero() => DEFAULT_PERIOD,
            Some(p) => p.max(MIN_PERIOD),
        };
        Ok(Reporter {
            observer: Arc::new(SinkSlot::new(observer)),
            period,
            reset_traffic: md.get_bool("observer.resetTraffic")?.unwrap_or(false),
        })
    }

    /// Where the reports go; replaceable while the service runs.
    pub fn sink(&self) -> Arc<SinkSlot> {
        self.observer.clone()
    }

    /// Reports `first`, the state the service was in when watching began
    /// (`running`), then every change,
    /// until `stop`; then reports what is still queued and the last
    /// change of the counters, so the final numbers are not lost.
    pub async fn run(
        self,
        service: Arc<str>,
        status: Arc<Status>,
        first: State,
        mut changes: Receiver<(State, String)>,
        stop: CancellationToken,
    ) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.period, self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<Event> = Vec::new();
        self.send_status(&service, first, &format!("service {service} is {first}"))
            .await;
        loop {
            tokio::select! {
                Some((state, msg)) = changes.recv() => {
                    self.send_status(&service, state, &msg).await;
                }
                _ = ticker.tick() => {
                    self.stats_tick(&service, || self.service_stats(&service, &status), &mut pending).await;
                }
                _ = stop.cancelled() => break,
            }
        }
        while let Ok((state, msg)) = changes.try_recv() {
            self.send_status(&service, state, &msg).await;
        }
        self.stats_tick(
            &service,
            || self.service_stats(&service, &status),
            &mut pending,
        )
        .await;
    }

    /// Reports a handler's per-client counters every period (GOST's
    /// handler-level observer): `events` gives them (resetting traffic
    /// counters when asked), `None` once the handler is gone.
    pub async fn run_clients(self, service: Arc<str>, events: impl Fn(bool) -> Option<Vec<Event>>) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.period, self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<Event> = Vec::new();
        loop {
            ticker.tick().await;
            let Some(now) = events(self.reset_traffic) else {
                return;
            };
            self.stats_tick(&service, || now, &mut pending).await;
        }
    }

    fn service_stats(&self, service: &str, status: &Status) -> Vec<Event> {
        let Some(stats) = status.stats() else {
            return Vec::new();
        };
        stats_event(stats, self.reset_traffic)
            .map(|s| Event::stats(service, s))
            .into_iter()
            .collect()
    }

    /// GOST sends status events once and does not retry them.
    async fn send_status(&self, service: &str, state: State, msg: &str) {
        let ev = [Event::status(service, state.as_str(), msg)];
        if let Err(e) = self.observer.observe(&ev).await {
            tracing::warn!(service, error = %e, "status event not observed");
        }
    }

    /// Sends again what failed last time, or else what `collect` finds
    /// changed.
    async fn stats_tick(
        &self,
        service: &str,
        collect: impl FnOnce() -> Vec<Event>,
        pending: &mut Vec<Event>,
    ) {
        if !pending.is_empty() {
            match self.observer.observe(pending).await {
                Ok(()) => pending.clear(),
                Err(e) => tracing::warn!(service, error = %e, "stats retry failed"),
            }
            return;
        }
        let ev = collect();
        if ev.is_empty() {
            return;
        }
        if let Err(e) = self.observer.observe(&ev).await {
            tracing::warn!(service, error = %e, "stats not observed, will retry");
            *pending = ev;
        }
    }
}

/// The counters as one stats event if they changed since the last one;
/// with `reset_traffic`, bytes since the last one.
pub fn stats_event(stats: &Stats, reset_traffic: bool) -> Option<StatsEvent> {
    if !stats.take_updated() {
        return None;
    }
    let mut snap = stats.snapshot();
    if reset_traffic {
        let (input, output) = stats.take_traffic();
        snap.input_bytes = input;
        snap.output_bytes = output;
    }
    Some(StatsEvent::from(snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::{ObserveFuture, ObserverError};
    use std::sync::Mutex;

    /// Records batches; fails the first `fail` calls.
    #[derive(Default)]
    struct Sink {
        got: Mutex<Vec<Event>>,
        fail: Mutex<u32>,
    }

    impl Observer for Sink {
        fn observe<'a>(&'a self, events: &'a [Event]) -> ObserveFuture<'a> {
            Box::pin(async move {
                let mut f = self.fail.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(ObserverError {
                        observer: "sink".into(),
                        msg: "down".into(),
                    });
                }
                self.got.lock().unwrap().extend_from_slice(events);
                Ok(())
            })
        }
    }

    fn reporter(sink: &Arc<Sink>, md: &[(&str, serde_json::Value)]) -> Reporter {
        let mut m = Metadata::new();
        for (k, v) in md {
            m.insert(*k, v.clone());
        }
        Reporter::from_metadata(sink.clone(), &m).unwrap()
    }

    #[test]
    fn period_defaults_and_minimum() {
        let sink = Arc::new(Sink::default());
        assert_eq!(reporter(&sink, &[]).period, DEFAULT_PERIOD);
        assert_eq!(
            reporter(&sink, &[("observer.period", "100ms".into())]).period,
            MIN_PERIOD
        );
        assert_eq!(
            reporter(&sink, &[("observePeriod", "3s".into())]).period,
            Duration::from_secs(3)
        );
    }

    async fn tick(r: &Reporter, status: &Status, pending: &mut Vec<Event>) {
        r.stats_tick("svc", || r.service_stats("svc", status), pending)
            .await;
    }

    #[tokio::test]
    async fn stats_only_when_changed_retried_and_deltas() {
        let sink = Arc::new(Sink::default());
        let r = reporter(&sink, &[("observer.resetTraffic", true.into())]);
        let status = Status::new("svc", true);
        let stats = status.stats().unwrap().clone();
        let mut pending = Vec::new();
        stats.add_input(10);
        *sink.fail.lock().unwrap() = 1;
        tick(&r, &status, &mut pending).await;
        assert_eq!(pending.len(), 1, "failed report kept for retry");
        stats.add_input(5);
        // The retry sends the old batch and nothing new.
        tick(&r, &status, &mut pending).await;
        assert!(pending.is_empty());
        tick(&r, &status, &mut pending).await;
        // Unchanged since: nothing more.
        tick(&r, &status, &mut pending).await;
        let got = sink.got.lock().unwrap().clone();
        let inputs: Vec<u64> = got.iter().map(|e| e.stats.unwrap().input_bytes).collect();
        assert_eq!(inputs, vec![10, 5]);
    }
}
