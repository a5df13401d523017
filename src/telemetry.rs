//! Logging and traces.
//!
//! Logs: human-readable lines on stderr (stdout carries only the `ready` line),
//! filtered by `RUST_LOG`; a line inside a traced request or saga names its
//! `trace_id`.
//!
//! Traces: OpenTelemetry over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the
//! standard `OTEL_*` variables apply: protocol, headers, service name, batch
//! delay). One trace runs from the API request through the saga's steps to each
//! downstream call, which carries a W3C `traceparent` header; the context crosses
//! Restate in the invocation's headers. Off by default, and then no span is made.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The exporter, when traces are on.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// Installs the global subscriber once; later calls do nothing. Traces are
/// exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => match exporter() {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("order-service: traces are off: {e}");
                None
            }
        },
        _ => None,
    };
    let otel = provider.as_ref().map(|p| {
        let tracer = p.tracer("order-service");
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if let (true, Some(provider)) = (installed, provider) {
        PROVIDER.set(provider).ok();
    }
}

fn exporter() -> anyhow::Result<SdkTracerProvider> {
    // http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL says http/json.
    let json = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.trim() == "http/json");
    let protocol = match json {
        true => opentelemetry_otlp::Protocol::HttpJson,
        false => opentelemetry_otlp::Protocol::HttpBinary,
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("order-service");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Sends what is left of the traces; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        provider.shutdown().ok();
    }
}

/// True when traces are exported.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// A span `name` (of `kind`: `request`, `saga`, `step`) continuing the trace of
/// `traceparent`, or of the current span; `Span::none()` when traces are off.
pub fn span(kind: &'static str, name: &str, traceparent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = match kind {
        "request" => tracing::info_span!(
            "request",
            otel.name = name,
            trace_id = tracing::field::Empty
        ),
        "saga" => tracing::info_span!("saga", otel.name = name, trace_id = tracing::field::Empty),
        _ => tracing::info_span!("step", otel.name = name),
    };
    if let Some(header) = traceparent {
        let parent = TraceContextPropagator::new().extract(&OneHeader(header, None));
        span.set_parent(parent).ok();
    }
    if kind != "step" {
        let trace_id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// The `traceparent` of the current span, when traces are on.
pub fn traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut carrier = OneHeader::default();
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut carrier);
    carrier.value()
}

/// The `traceparent` header of the current span, to send with an outgoing call
/// (to Restate, which hands it to the handler, or to a downstream service); empty
/// when traces are off.
pub fn headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = traceparent().and_then(|t| t.parse().ok()) {
        headers.insert(TRACEPARENT, value);
    }
    headers
}

/// A carrier of the one header the W3C propagator reads and writes.
#[derive(Default)]
struct OneHeader<'a>(&'a str, Option<String>);

impl<'a> OneHeader<'a> {
    fn value(self) -> Option<String> {
        self.1
    }
}

impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for OneHeader<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.1 = Some(value);
        }
    }
}
