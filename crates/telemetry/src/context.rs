//! W3C trace context (`traceparent`) of tracing spans: how one sync's trace
//! crosses processes. The API stores the `traceparent` of the request that
//! created a sync in its ledger row; a worker that claims the sync opens its
//! span as a child of it, whichever process pushed the job.
//!
//! Everything here is a no-op when the process has no OpenTelemetry layer
//! (`telemetry.otlp_endpoint` unset): no span has a trace context then, so
//! nothing is stored and no parent is set.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `traceparent` of the current span, if it belongs to a trace (the
/// OpenTelemetry layer is installed and the span is enabled).
pub fn current_traceparent() -> Option<String> {
    traceparent(&Span::current())
}

/// The `traceparent` of `span`: `00-<trace id>-<span id>-<flags>`.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    format_traceparent(span.context().span().span_context())
}

/// Make `span` a child of the span that `traceparent` names (a remote
/// parent: another process, or an earlier one). Call it before the span is
/// first entered. Returns whether a parent was set: not when `traceparent`
/// is absent or malformed, or when there is no OpenTelemetry layer.
pub fn set_parent_from(span: &Span, traceparent: Option<&str>) -> bool {
    let Some(parent) = traceparent.and_then(parse_traceparent) else {
        return false;
    };
    if span.is_disabled() {
        return false;
    }
    span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent))
        .is_ok()
}

/// Link `span` to the current span (another trace's): an operator's retry
/// request, whose work continues the sync's own trace.
pub fn link_to_current(span: &Span) {
    let current = Span::current();
    if span.is_disabled() || current.is_disabled() {
        return;
    }
    let cx = current.context();
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// `00-<trace id>-<span id>-<flags>`, or `None` for an invalid context.
pub fn format_traceparent(cx: &SpanContext) -> Option<String> {
    cx.is_valid().then(|| {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        )
    })
}

/// A `traceparent` header value (W3C Trace Context, version 00; later
/// versions are read by their first four fields, as the spec asks).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
        return None;
    }
    if !hex(flags, 2) || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparents_round_trip() {
        let cx = parse_traceparent(TP).unwrap();
        assert!(cx.is_remote() && cx.is_sampled());
        assert_eq!(
            cx.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(format_traceparent(&cx).as_deref(), Some(TP));
        let unsampled = parse_traceparent(&TP.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // A later version may add fields after the flags.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_happens() {
        let span = tracing::info_span!("sync");
        assert_eq!(traceparent(&span), None);
        assert!(!set_parent_from(&span, Some(TP)));
        assert_eq!(current_traceparent(), None);
    }
}
