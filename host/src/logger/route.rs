//! Named loggers (`loggers:`) and the services that use them (service
//! `logger`/`loggers`): a log line that names a service with loggers is
//! written to each of them, at each one's level and format, instead of to
//! the main log, as GOST gives such a service its own logger. The routes
//! are replaced as a whole when the config changes through the API.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use super::json::Fields;
use super::{open_output, parse_format, parse_level, LogError};
use gost_core::config::{Config, LoggerConfig};

/// One named logger's output.
struct Sink {
    name: String,
    level: Level,
    json: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

/// Which loggers each service writes to, and the loggers by name with the
/// config each was opened from (an unchanged logger keeps its file open
/// across changes).
#[derive(Default)]
pub struct ServiceLoggers {
    services: HashMap<String, Vec<Arc<Sink>>>,
    sinks: HashMap<String, (LoggerConfig, Arc<Sink>)>,
}

static ROUTES: RwLock<Option<ServiceLoggers>> = RwLock::new(None);
/// Lets every line skip the lookup while no service has loggers.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The most verbose level of any named logger, as tracing's level number
/// (TRACE = 0 ... ERROR = 4, OFF = 5).
static MAX_LEVEL: AtomicUsize = AtomicUsize::new(5);

fn level_rank(l: &Level) -> usize {
    match *l {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// Opens the loggers `cfg` defines and maps its services onto them,
/// without installing anything yet, so a bad logger refuses the change.
pub fn prepare(cfg: &Config) -> Result<ServiceLoggers, LogError> {
    let routes = ROUTES.read().unwrap_or_else(|p| p.into_inner());
    let mut sinks = HashMap::new();
    for l in &cfg.loggers {
        let reuse = routes
            .as_ref()
            .and_then(|r| r.sinks.get(&l.name))
            .filter(|(c, _)| c == l)
            .map(|(_, s)| s.clone());
        let sink = match reuse {
            Some(s) => s,
            None => Arc::new(open_sink(l).map_err(|e| LogError::Logger {
                name: l.name.clone(),
                source: Box::new(e),
            })?),
        };
        sinks.insert(l.name.clone(), (l.clone(), sink));
    }
    let mut services = HashMap::new();
    for svc in &cfg.services {
        let used: Vec<Arc<Sink>> = std::iter::once(&svc.logger)
            .chain(&svc.loggers)
            .filter_map(|n| sinks.get(n).map(|(_, s)| s.clone()))
            .collect();
        if !used.is_empty() {
            services.insert(svc.name.clone(), used);
        }
    }
    Ok(ServiceLoggers { services, sinks })
}

fn open_sink(l: &LoggerConfig) -> Result<Sink, LogError> {
    let log = l.log.clone().unwrap_or_default();
    let level: Level = parse_level(&log.level)?
        .parse()
        .map_err(|_| LogError::Level(log.level.clone()))?;
    Ok(Sink {
        name: l.name.clone(),
        level,
        json: parse_format(&log.format)?,
        out: Mutex::new(open_output(Some(&log))?),
    })
}

impl ServiceLoggers {
    /// Makes these the routes every log line follows from now on.
    pub fn install(self) {
        let max = self
            .services
            .values()
            .flatten()
            .map(|s| level_rank(&s.level))
            .min()
            .unwrap_or(5);
        ACTIVE.store(!self.services.is_empty(), Ordering::Relaxed);
        let changed = MAX_LEVEL.swap(max, Ordering::Relaxed) != max;
        *ROUTES.write().unwrap_or_else(|p| p.into_inner()) = Some(self);
        if changed {
            // Call sites cache whether anyone listens at their level.
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// The `service` field of a log line, if it has one.
fn service_of(event: &Event<'_>) -> Option<String> {
    struct Find(Option<String>);
    impl Visit for Find {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "service" {
                self.0 = Some(value.to_string());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "service" {
                self.0 = Some(format!("{value:?}"));
            }
        }
    }
    let mut f = Find(None);
    event.record(&mut f);
    f.0
}

/// The sinks a line goes to instead of the main log; empty for most.
fn sinks_for(event: &Event<'_>) -> Vec<Arc<Sink>> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return Vec::new();
    }
    let Some(service) = service_of(event) else {
        return Vec::new();
    };
    let routes = ROUTES.read().unwrap_or_else(|p| p.into_inner());
    routes
        .as_ref()
        .and_then(|r| r.services.get(&service))
        .cloned()
        .unwrap_or_default()
}

/// The main log's filter: its levels, minus the lines that go to a
/// service's own loggers.
pub struct DefaultFilter(EnvFilter);

impl DefaultFilter {
    pub fn new(f: EnvFilter) -> Self {
        DefaultFilter(f)
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for DefaultFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::enabled(&self.0, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        Filter::<S>::callsite_enabled(&self.0, meta)
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        sinks_for(event).is_empty()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        Filter::<S>::on_new_span(&self.0, attrs, id, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.0, id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.0, id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        Filter::<S>::on_close(&self.0, id, cx)
    }
}

/// Writes routed lines; it sees a line only when some named logger's
/// level lets it through.
struct RouteLayer;

struct RouteFilter;

impl<S: Subscriber> Filter<S> for RouteFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        level_rank(meta.level()) >= MAX_LEVEL.load(Ordering::Relaxed)
    }

    /// Rebuilt whenever the most verbose logger level changes.
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if level_rank(meta.level()) >= MAX_LEVEL.load(Ordering::Relaxed) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(match MAX_LEVEL.load(Ordering::Relaxed) {
            0 => LevelFilter::TRACE,
            1 => LevelFilter::DEBUG,
            2 => LevelFilter::INFO,
            3 => LevelFilter::WARN,
            4 => LevelFilter::ERROR,
            _ => LevelFilter::OFF,
        })
    }
}

pub fn layer<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
    RouteLayer.with_filter(RouteFilter)
}

impl<S: Subscriber> Layer<S> for RouteLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let sinks = sinks_for(event);
        if sinks.is_empty() {
            return;
        }
        let level = event.metadata().level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        for sink in sinks.iter().filter(|s| level <= &s.level) {
            let line = if sink.json {
                let mut l = fields.json(level, &[("logger", &sink.name)]);
                l.push('\n');
                l
            } else {
                text(&fields, level)
            };
            let mut out = sink.out.lock().unwrap_or_else(|p| p.into_inner());
            // A logger that cannot write has nowhere to report it.
            let _ = out.write_all(line.as_bytes());
        }
    }
}

/// A named logger's text line: the main log's text layout.
fn text(fields: &Fields, level: &Level) -> String {
    let mut s = format!("{} {:>5} {}", now(), level.as_str(), fields.message);
    for (k, v) in &fields.rest {
        match v {
            serde_json::Value::String(v) => write!(s, " {k}={v}"),
            v => write!(s, " {k}={v}"),
        }
        .expect("writing to a String");
    }
    s.push('\n');
    s
}

fn now() -> String {
    gost_core::rotate::rfc3339(SystemTime::now())
}
