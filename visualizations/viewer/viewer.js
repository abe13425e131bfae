// runchart run viewer: overlays one recorded run (JSONL of the Stately inspection protocol,
// written by createRunRecorder) on the run chart. Plain browser JavaScript, no build step, no
// network: the recording comes embedded in the page, from a file the user picks or drops, or
// (when the folder is served over HTTP) from ?recording=<url>.
// Everything from a recording is inserted as text (textContent), never as HTML.
(function () {
  'use strict';

  var FINALS = ['completed', 'denied', 'failed', 'cancelled'];
  /** What the recorder writes in place of model text the output check has not allowed (src/inspect/withhold.ts). */
  var WITHHELD = '[withheld until the output check allows it]';

  /** A state value as one dotted name: `toolExecution.awaitingApproval`. */
  function stateKey(value) {
    if (typeof value === 'string') return value;
    if (!value || typeof value !== 'object') return String(value);
    var entries = Object.entries(value);
    if (entries.length === 0) return '';
    return entries[0][0] + '.' + stateKey(entries[0][1]);
  }

  function parseRecording(text) {
    var events = [];
    var problems = 0;
    text.split('\n').forEach(function (line) {
      if (!line.trim()) return;
      try {
        var event = JSON.parse(line);
        if (event && typeof event.type === 'string' && typeof event.sessionId === 'string') events.push(event);
        else problems++;
      } catch (error) {
        problems++;
      }
    });
    return { events: events, problems: problems };
  }

  function statusOf(snapshot) {
    if (!snapshot) return 'unknown';
    var key = stateKey(snapshot.value);
    if (FINALS.indexOf(key) >= 0) return key;
    if (key === 'toolExecution.awaitingApproval') return 'awaiting_approval';
    if (snapshot.status === 'error') return 'failed';
    return 'running';
  }

  /** Reads a recording: the root actor's states with their times, decisions, tool calls, approvals, the last context. */
  function analyze(events) {
    var root = null;
    var sessions = 0;
    var path = [];
    var decisions = [];
    var calls = [];
    var approvals = [];
    var timeline = [];
    var last = null;
    var seenDecisions = 0;
    var seenCalls = 0;
    var first = events.length ? events[0].timestamp : 0;
    var end = events.length ? events[events.length - 1].timestamp : 0;
    var known = {};
    var notes = [];
    events.forEach(function (event) {
      if (typeof event.note === 'string' && notes.indexOf(event.note) < 0) notes.push(event.note);
      if (event.type === '@xstate.actor') {
        // The run is the actor whose parent (the runtime's actor) is not in its recording; a run
        // restored in another process starts a new one, whose events follow in the same file.
        var isRun = !event.parentId || !known[event.parentId];
        known[event.sessionId] = true;
        if (isRun) {
          root = event.sessionId;
          sessions++;
        }
        return;
      }
      if (root === null || event.sessionId !== root) return;
      if (event.type === '@xstate.event') {
        var sent = event.event || {};
        if (sent.type === 'tool.approve' || sent.type === 'tool.reject') {
          approvals.push({ at: event.timestamp, kind: sent.type === 'tool.approve' ? 'approve' : 'reject', callId: sent.callId, principalId: sent.principalId, reason: sent.reason || '' });
        }
        if (sent.type && sent.type !== 'telemetry.mark') timeline.push({ at: event.timestamp, type: sent.type === 'xstate.init' && sessions > 1 ? 'restored' : sent.type });
        return;
      }
      if (event.type !== '@xstate.snapshot' || !event.snapshot) return;
      var snapshot = event.snapshot;
      var key = stateKey(snapshot.value);
      var current = path[path.length - 1];
      if (!current || current.state !== key) {
        if (current) current.leftAt = event.timestamp;
        path.push({ state: key, enteredAt: event.timestamp, leftAt: null, via: (event.event && event.event.type) || '' });
      }
      var context = snapshot.context || {};
      (context.decisions || []).slice(seenDecisions).forEach(function (decision) {
        decisions.push(Object.assign({ at: event.timestamp }, decision));
      });
      seenDecisions = Math.max(seenDecisions, (context.decisions || []).length);
      (context.toolCalls || []).slice(seenCalls).forEach(function (call) {
        calls.push(Object.assign({ at: event.timestamp }, call));
      });
      seenCalls = Math.max(seenCalls, (context.toolCalls || []).length);
      last = snapshot;
    });
    var context = (last && last.context) || {};
    var status = statusOf(last);
    if (status === 'awaiting_approval') {
      var parked = (context.calls || [])[context.cursor || 0];
      if (parked) {
        calls.push({
          at: path.length ? path[path.length - 1].enteredAt : first,
          callId: parked.callId,
          toolName: parked.toolName,
          capability: parked.capability,
          version: parked.version,
          args: parked.arguments,
          outcome: { status: 'awaiting_approval' },
          decision: context.pendingDecision || null,
          approval: null,
        });
      }
    }
    return { notes: notes, root: root, sessions: sessions, path: path, decisions: decisions, calls: calls, approvals: approvals, timeline: timeline, context: context, status: status, first: first, end: end, events: events.length };
  }

  // ---- formatting -------------------------------------------------------------------------

  function duration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return '';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    if (ms < 3600000) return Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
    return (ms / 3600000).toFixed(1) + ' h';
  }

  /** `xstate.done.actor.callModel` → `callModel done`; the run's own events stay as they are. */
  function eventName(type) {
    if (!type) return '';
    if (type === 'xstate.init') return 'start';
    if (type === 'restored') return 'restored from the run store (another process)';
    var match = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
    return match ? match[2] + ' ' + (match[1] === 'done' ? 'done' : 'error') : type;
  }

  function offset(at, first) {
    return '+' + duration(at - first);
  }

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (name === 'text') node.textContent = attributes[name];
      else node.setAttribute(name, attributes[name]);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function compact(value) {
    if (value === null || value === undefined) return '';
    if (typeof value === 'string') return value;
    try {
      return JSON.stringify(value);
    } catch (error) {
      return String(value);
    }
  }

  function table(headers, rows, className) {
    if (rows.length === 0) return element('p', { class: 'empty', text: 'none' });
    return element('table', { class: className || '' }, [
      element('thead', {}, [element('tr', {}, headers.map(function (header) { return element('th', { text: header }); }))]),
      element('tbody', {}, rows.map(function (row) {
        return element('tr', row.className ? { class: row.className } : {}, row.cells.map(function (cell) {
          return cell instanceof Node ? element('td', {}, [cell]) : element('td', { text: cell === undefined || cell === null ? '' : String(cell) });
        }));
      })),
    ]);
  }

  function pill(text, kind) {
    return element('span', { class: 'pill ' + kind, text: text });
  }

  function verdictPill(verdict) {
    return pill(verdict, verdict === 'allow' ? 'good' : verdict === 'deny' ? 'bad' : 'warn');
  }

  function outcomePill(outcome) {
    var status = (outcome && outcome.status) || 'unknown';
    return pill(status, status === 'ok' ? 'good' : status === 'awaiting_approval' ? 'warn' : 'bad');
  }

  function outcomeDetail(outcome) {
    if (!outcome) return '';
    if (outcome.status === 'ok') return compact(outcome.output);
    if (outcome.error) return compact(outcome.error.message || outcome.error);
    return outcome.reason || '';
  }

  // ---- the diagram ------------------------------------------------------------------------

  /** The transitions drawn from each state, and which states are transient (left at once). */
  function indexDiagram(svg) {
    var from = {};
    svg.querySelectorAll('g.transition').forEach(function (group) {
      var source = group.getAttribute('data-from');
      (from[source] = from[source] || []).push(group);
    });
    var transient = {};
    svg.querySelectorAll('g.state.transient').forEach(function (group) {
      transient[group.getAttribute('data-state')] = true;
    });
    return { from: from, transient: transient };
  }

  /** The drawn edges from `a` to `b`, through transient states only (a snapshot never rests in them). */
  function route(index, a, b) {
    var queue = [{ state: a, edges: [] }];
    var seen = {};
    while (queue.length) {
      var item = queue.shift();
      var outgoing = index.from[item.state] || [];
      for (var i = 0; i < outgoing.length; i++) {
        var target = outgoing[i].getAttribute('data-to');
        var edges = item.edges.concat([outgoing[i]]);
        if (target === b) return edges;
        if (index.transient[target] && !seen[target]) {
          seen[target] = true;
          queue.push({ state: target, edges: edges });
        }
      }
    }
    // Root transitions (run.cancel) leave from any state.
    return (index.from['*'] || []).filter(function (group) { return group.getAttribute('data-to') === b; });
  }

  function clearHighlight(svg) {
    svg.classList.remove('has-run');
    svg.querySelectorAll('.visited, .taken, .current').forEach(function (node) {
      node.classList.remove('visited', 'taken', 'current');
    });
    svg.querySelectorAll('.visit-badge').forEach(function (node) { node.remove(); });
    svg.querySelectorAll('g.transition > path').forEach(function (path) { path.setAttribute('marker-end', 'url(#arrowhead)'); });
  }

  /** A pill on the top-right corner of a state's box: how often the run was there and for how long. */
  function badge(group, text) {
    var box = group.querySelector('rect.box');
    if (!box) return;
    var ns = 'http://www.w3.org/2000/svg';
    var right = Number(box.getAttribute('x')) + Number(box.getAttribute('width'));
    var top = Number(box.getAttribute('y'));
    var holder = document.createElementNS(ns, 'g');
    holder.setAttribute('class', 'visit-badge');
    var back = document.createElementNS(ns, 'rect');
    var label = document.createElementNS(ns, 'text');
    label.textContent = text;
    holder.appendChild(back);
    holder.appendChild(label);
    group.appendChild(holder);
    var width = (label.getComputedTextLength ? label.getComputedTextLength() : text.length * 6.5) + 10;
    var x = right - width + 8;
    back.setAttribute('x', String(x));
    back.setAttribute('y', String(top - 9));
    back.setAttribute('width', String(width));
    back.setAttribute('height', '16');
    back.setAttribute('rx', '8');
    label.setAttribute('x', String(x + width / 2));
    label.setAttribute('y', String(top + 3));
    label.setAttribute('text-anchor', 'middle');
  }

  /** Highlights the run's path: visited states (and their compound parents), taken edges, the state it ended in. */
  function highlight(svg, analysis) {
    clearHighlight(svg);
    var path = analysis.path;
    if (!path.length) return;
    svg.classList.add('has-run');
    var index = indexDiagram(svg);
    var mark = function (key, className) {
      var group = svg.querySelector('g.state[data-state="' + CSS.escape(key) + '"]');
      if (group) group.classList.add(className);
      return group;
    };
    var totals = {};
    var visits = {};
    path.forEach(function (step, position) {
      var parts = step.state.split('.');
      for (var depth = 1; depth <= parts.length; depth++) mark(parts.slice(0, depth).join('.'), 'visited');
      visits[step.state] = (visits[step.state] || 0) + 1;
      if (step.leftAt !== null) totals[step.state] = (totals[step.state] || 0) + (step.leftAt - step.enteredAt);
      var edges = position === 0
        ? (step.state === 'ingress' ? Array.prototype.slice.call(svg.querySelectorAll('g.transition.initial-transition')) : [])
        : route(index, path[position - 1].state, step.state);
      edges.forEach(function (group) {
        group.classList.add('taken');
        var line = group.querySelector('path');
        if (line) line.setAttribute('marker-end', 'url(#arrowhead-taken)');
        var target = group.getAttribute('data-to');
        if (index.transient[target]) mark(target, 'visited');
      });
    });
    var final = mark(path[path.length - 1].state, 'current');
    if (final) final.classList.add('status-' + analysis.status);
    Object.keys(visits).forEach(function (key) {
      var group = svg.querySelector('g.state[data-state="' + CSS.escape(key) + '"]');
      if (!group) return;
      var parts = [];
      if (visits[key] > 1) parts.push(visits[key] + '×');
      if (totals[key] !== undefined) parts.push(duration(totals[key]));
      if (parts.length) badge(group, parts.join(' '));
    });
  }

  // ---- the page ---------------------------------------------------------------------------

  function section(title, body, id) {
    return element('section', { class: 'panel', id: id }, [element('h2', { text: title })].concat(body));
  }

  /** The top of the page: the run's input, tenant, principal, status and output. */
  function summarize(values) {
    var summary = document.getElementById('summary');
    if (!summary) return;
    Object.keys(values).forEach(function (name) {
      var node = document.getElementById('summary-' + name);
      if (node) node.textContent = values[name];
    });
    var status = document.getElementById('summary-status');
    if (status) status.className = 'pill status ' + values.status;
    summary.hidden = false;
  }

  function render(analysis, source) {
    var context = analysis.context;
    var container = document.getElementById('run');
    container.textContent = '';
    var left = element('div', { class: 'column' });
    var right = element('div', { class: 'column' });
    container.appendChild(left);
    container.appendChild(right);
    var root = left;
    var svg = document.querySelector('#diagram svg');
    if (svg) highlight(svg, analysis);

    var status = analysis.status;
    document.getElementById('run-title').textContent = context.runId ? 'run ' + context.runId : 'recorded run';
    var statusNode = document.getElementById('run-status');
    statusNode.textContent = status;
    statusNode.className = 'pill status ' + status;

    // Identity and input come from what ingress accepted (older recordings kept them at the top of the context).
    var accepted = context.accepted || {};
    var tenant = accepted.tenantId || context.tenantId;
    var principal = accepted.principalId || context.principalId;
    summarize({
      input: typeof accepted.input === 'string' ? accepted.input : '',
      tenant: tenant || '',
      principal: principal || '',
      status: status,
      output: context.output === WITHHELD ? '(withheld: the output check has not allowed the answer)' : context.output || (status === 'awaiting_approval' ? '(waiting for an approval)' : '(no output)'),
    });
    // A recording completed from the stored run says so above everything else.
    analysis.notes.forEach(function (note) { root.appendChild(element('p', { class: 'incomplete', text: note })); });

    var facts = [
      ['tenant', tenant],
      ['principal', principal],
      ['session', accepted.sessionId || context.sessionId],
      ['trace', accepted.traceId || context.traceId],
      ['started', analysis.first ? new Date(analysis.first).toISOString() : ''],
      ['recorded for', duration(analysis.end - analysis.first)],
      ['model calls', context.usage ? String(context.usage.modelCalls) : ''],
      ['tokens in / out', context.usage ? context.usage.inputTokens + ' / ' + context.usage.outputTokens : ''],
      ['background', context.background],
      ['source', source + ' (' + analysis.events + ' events' + (analysis.sessions > 1 ? ', ' + analysis.sessions + ' processes' : '') + ')'],
    ].filter(function (fact) { return fact[1] !== undefined && fact[1] !== null && fact[1] !== ''; });
    root.appendChild(element('dl', { class: 'facts' }, facts.reduce(function (all, fact) {
      return all.concat([element('dt', { text: fact[0] }), element('dd', { text: String(fact[1]) })]);
    }, [])));

    var result = [];
    if (context.output === WITHHELD) result.push(element('p', { class: 'withheld', text: 'The answer is withheld: the output check has not allowed it, so the recording does not carry it.' }));
    else if (context.output) result.push(element('pre', { class: 'output', text: context.output }));
    if (context.error) result.push(element('p', { class: 'error', text: 'error (' + context.error.kind + ', ' + context.error.layer + '): ' + context.error.message }));
    if (context.cancelReason) result.push(element('p', { class: 'error', text: 'cancelled: ' + context.cancelReason }));
    (context.warnings || []).forEach(function (warning) { result.push(element('p', { class: 'warning', text: 'warning: ' + warning })); });
    if (!result.length) result.push(element('p', { class: 'empty', text: status === 'awaiting_approval' ? 'waiting for an approval' : 'no output' }));
    root.appendChild(section('Result', result, 'result'));

    root.appendChild(section('Path', [table(
      ['#', 'state', 'entered', 'time in state', 'reached by'],
      analysis.path.map(function (step, position) {
        var final = position === analysis.path.length - 1;
        return {
          className: final ? 'current' : '',
          cells: [String(position + 1), step.state, offset(step.enteredAt, analysis.first), step.leftAt === null ? (FINALS.indexOf(step.state) >= 0 ? 'final' : 'still here') : duration(step.leftAt - step.enteredAt), eventName(step.via)],
        };
      }),
      'path',
    )], 'path'));

    root = right;
    root.appendChild(section('Policy decisions', [table(
      ['at', 'stage', 'verdict', 'rule', 'capability', 'principal', 'reason'],
      analysis.decisions.map(function (decision) {
        return { cells: [offset(decision.at, analysis.first), decision.stage, verdictPill(decision.verdict), decision.ruleId, decision.capability || '', decision.principalId, decision.reason] };
      }),
      'decisions',
    )], 'decisions'));

    root.appendChild(section('Tool calls', [table(
      ['at', 'call', 'capability', 'arguments', 'outcome', 'detail', 'decided by'],
      analysis.calls.map(function (call) {
        var capability = call.capability ? call.capability + (call.version ? '@' + call.version : '') : call.toolName + ' (unknown)';
        var decided = [call.decision ? call.decision.stage + ': ' + call.decision.verdict + ' (' + call.decision.ruleId + ')' : '', call.approval ? 'approval: ' + call.approval.verdict + ' by ' + call.approval.principalId + ' (' + call.approval.ruleId + ')' : ''].filter(Boolean).join('; ');
        return { cells: [offset(call.at, analysis.first), call.callId, capability, element('code', { text: compact(call.args) }), outcomePill(call.outcome), outcomeDetail(call.outcome), decided] };
      }),
      'calls',
    )], 'calls'));

    root.appendChild(section('Approvals', [table(
      ['at', 'request', 'call', 'by', 'reason', 'policy'],
      analysis.approvals.map(function (approval) {
        var decision = analysis.decisions.filter(function (entry) { return entry.stage === 'approval' && entry.callId === approval.callId && entry.principalId === approval.principalId && entry.at >= approval.at; })[0];
        return { cells: [offset(approval.at, analysis.first), approval.kind, approval.callId, approval.principalId, approval.reason, decision ? verdictPill(decision.verdict) : ''] };
      }),
      'approvals',
    )], 'approvals'));

    root.appendChild(section('Events sent to the run', [table(
      ['at', 'event'],
      analysis.timeline.map(function (entry) { return { cells: [offset(entry.at, analysis.first), eventName(entry.type)] }; }),
      'timeline',
    )], 'timeline'));
    document.body.classList.add('loaded');
  }

  function show(text, source) {
    var parsed = parseRecording(text);
    var analysis = analyze(parsed.events);
    render(analysis, source);
    var note = document.getElementById('load-note');
    if (note) note.textContent = parsed.problems ? parsed.problems + ' lines could not be read' : '';
    window.runchartViewer = { analysis: analysis };
  }

  function fail(message) {
    var note = document.getElementById('load-note');
    if (note) note.textContent = message;
  }

  function start() {
    var embedded = document.getElementById('recording');
    if (embedded && embedded.textContent.trim()) show(embedded.textContent, embedded.getAttribute('data-source') || 'embedded recording');
    var picker = document.getElementById('file');
    if (picker) {
      picker.addEventListener('change', function () {
        var file = picker.files && picker.files[0];
        if (file) file.text().then(function (text) { show(text, file.name); }, function () { fail('cannot read ' + file.name); });
      });
    }
    document.addEventListener('dragover', function (event) { event.preventDefault(); });
    document.addEventListener('drop', function (event) {
      event.preventDefault();
      var file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) file.text().then(function (text) { show(text, file.name); });
    });
    var wanted = new URLSearchParams(location.search).get('recording');
    if (wanted && location.protocol !== 'file:') {
      fetch(wanted).then(function (response) { return response.text(); }).then(function (text) { show(text, wanted); }, function () { fail('cannot load ' + wanted); });
    }
  }

  window.runchartViewerInternals = { stateKey: stateKey, parseRecording: parseRecording, analyze: analyze };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
