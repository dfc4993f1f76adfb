#!/usr/bin/env bash
# Each service's own journal records carry MESSAGE, PRIORITY, SERVICE,
# TRACE_ID, SPAN_ID and their key-value pairs as fields, and a trace id passed
# in with TRACEPARENT at start is the TRACE_ID of every record.
source "$(dirname "$0")/lib.sh"

trace_id=4bf92f3577b34da6a3ce929d0e0e4736
parent_span=00f067aa0ba902b7
traceparent="00-$trace_id-$parent_span-01"
# Fields every record has anyway; a record's own key-value pairs are the rest.
standard='^(MESSAGE|PRIORITY|SERVICE|TRACE_ID|SPAN_ID|PARENT_SPAN_ID|SYSLOG_IDENTIFIER|CODE_[A-Z]+|_.*)$'

cleanup() {
    rm -f /run/systemd/system/mxrc-*.service.d/50-traceparent.conf
    systemctl daemon-reload
    systemctl restart mxrc.target
}
trap cleanup EXIT

for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    mkdir -p "/run/systemd/system/$unit.d"
    printf '[Service]\nEnvironment=TRACEPARENT=%s\n' "$traceparent" >"/run/systemd/system/$unit.d/50-traceparent.conf"
done
# At debug level the exporter logs each poll in a child span of its own.
monitor_exec=$(grep '^ExecStart=' /etc/systemd/system/mxrc-monitor.service)
printf 'ExecStart=\n%s --log.level debug\n' "$monitor_exec" >>/run/systemd/system/mxrc-monitor.service.d/50-traceparent.conf
systemctl daemon-reload
systemctl restart mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service
sleep 2

for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    service=${unit%.service}
    # Records of this start only: the stopping instance still logs after the restart.
    invocation=$(unit_prop "$unit" InvocationID)
    records=$(journalctl "_SYSTEMD_INVOCATION_ID=$invocation" -o json | jq -c "select(._COMM == \"$service\")")
    count=$(grep -c . <<<"$records" || true)
    [ "$count" -gt 0 ] || fail "$unit wrote no records of its own to the journal in invocation $invocation"

    # jq -s and slicing instead of `| head`, which would end jq with SIGPIPE under pipefail.
    missing=$(jq -r -s 'map(select(.MESSAGE == null or .PRIORITY == null or .SERVICE == null or .TRACE_ID == null or .SPAN_ID == null)) | .[:3][] | .MESSAGE' <<<"$records")
    [ -z "$missing" ] || fail "$unit has records without MESSAGE, PRIORITY, SERVICE, TRACE_ID or SPAN_ID: $missing"

    services=$(jq -r .SERVICE <<<"$records" | sort -u | paste -sd,)
    [ "$services" = "$service" ] || fail "$unit records carry SERVICE=$services, expected $service"

    traces=$(jq -r .TRACE_ID <<<"$records" | sort -u | paste -sd,)
    [ "$traces" = "$trace_id" ] || fail "$unit records carry TRACE_ID=$traces, expected the TRACEPARENT's $trace_id"

    bad_spans=$(jq -r -s 'map(.SPAN_ID | select(test("^[0-9a-f]{16}$") | not)) | .[:3][]' <<<"$records")
    [ -z "$bad_spans" ] || fail "$unit has SPAN_ID values that are not 16 hex digits: $bad_spans"
    jq -r .SPAN_ID <<<"$records" | grep -qvx "$parent_span" || fail "$unit reuses the caller's span id instead of its own"

    start=$(jq -c -s 'map(select(.PRIORITY == "6")) | first // empty' <<<"$records")
    [ -n "$start" ] || fail "$unit logged no info record (PRIORITY 6) at start"
    own_fields=$(jq -r 'keys[]' <<<"$start" | { grep -Ev "$standard" || true; } | paste -sd' ')
    [ -n "$own_fields" ] || fail "$unit's start record has no key-value fields of its own: $start"
    log "$unit: $count records, start record fields: $own_fields"
done

# Child spans: each poll of the exporter has its own SPAN_ID and the process
# span as PARENT_SPAN_ID; the process span has the caller's span as parent.
invocation=$(unit_prop mxrc-monitor.service InvocationID)
records=$(journalctl "_SYSTEMD_INVOCATION_ID=$invocation" -o json | jq -c 'select(._COMM == "mxrc-monitor")')
process_span=$(jq -r -s 'map(select(.MESSAGE == "started")) | first | .SPAN_ID // empty' <<<"$records")
[ -n "$process_span" ] || fail "mxrc-monitor logged no 'started' record"
[ "$(jq -r -s 'map(select(.MESSAGE == "started")) | first | .PARENT_SPAN_ID' <<<"$records")" = "$parent_span" ] ||
    fail "mxrc-monitor's process span does not name the caller's span $parent_span as its parent"
polls=$(jq -c -s --arg p "$process_span" 'map(select(.PARENT_SPAN_ID == $p))' <<<"$records")
poll_count=$(jq length <<<"$polls")
[ "$poll_count" -ge 2 ] || fail "mxrc-monitor logged $poll_count records in child spans of $process_span, expected one per poll"
[ "$(jq '[.[].SPAN_ID] | unique | length' <<<"$polls")" = "$poll_count" ] ||
    fail "mxrc-monitor's poll records share span ids: $(jq -c '[.[].SPAN_ID]' <<<"$polls")"
log "mxrc-monitor: $poll_count poll records, each in its own child span of $process_span"
