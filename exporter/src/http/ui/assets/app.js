// kadvisor web UI: polls /ui/snapshot every second, keeps the last 10 minutes of
// every row in this tab (the server keeps nothing), and draws the selected cgroup
// with uPlot. Data flow: poll → ingest (history, rates, events) → render (summary,
// tree, selection). docs/web-ui.md describes the snapshot format.
(function () {
  'use strict';

  const SNAPSHOT_URL = '/ui/snapshot';
  const WINDOW_S = 600;
  const REQUEST_TIMEOUT_MS = 5000;
  const CHART_HEIGHT = 150;
  const DEFAULT_EXPANDED = /^(kubepods|kubepods\.slice|burstable|besteffort|guaranteed|kubepods-(burstable|besteffort)\.slice)$/;

  // ---------------------------------------------------------------- formatting
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function fmtBytes(v) {
    if (v == null || !isFinite(v)) return '–';
    let i = 0;
    let n = Math.abs(v);
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
    const digits = n >= 100 || i === 0 ? 0 : n >= 10 ? 1 : 2;
    return (v < 0 ? '-' : '') + n.toFixed(digits) + ' ' + UNITS[i];
  }
  const fmtRate = (v) => (v == null ? '–' : fmtBytes(v) + '/s');
  // For the header cards: 45.7K/s.
  const fmtRateShort = (v) => (v == null ? '–' : fmtBytes(v).replace(/ ([KMGTP])iB$/, '$1').replace(/ B$/, 'B') + '/s');
  const fmtCores = (v) => (v == null || !isFinite(v) ? '–' : v < 0.1 && v > 0 ? v.toFixed(3) : v.toFixed(2));
  const fmtCount = (v) => (v == null || !isFinite(v) ? '–' : Math.round(v).toLocaleString('en-US'));
  const fmtPct = (v) => (v == null || !isFinite(v) ? '–' : v.toFixed(1) + '%');
  const pad2 = (n) => String(n).padStart(2, '0');
  function fmtClock(t) {
    const d = new Date(t * 1000);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  // ---------------------------------------------------------------- model
  // Derived series per row: rates of counters, gauges as they are.
  const RATES = {
    cpu: 'cpu_seconds', cpu_user: 'cpu_user_seconds', cpu_system: 'cpu_system_seconds',
    throttled_s: 'cpu_throttled_seconds',
    net_rx: 'network_receive_bytes', net_tx: 'network_transmit_bytes',
    sock_rx: 'socket_receive_bytes', sock_tx: 'socket_transmit_bytes',
    io_read: 'io_read_bytes', io_write: 'io_write_bytes',
  };
  const GAUGES = {
    mem_usage: 'memory_usage_bytes', mem_ws: 'memory_working_set_bytes',
    mem_rss: 'memory_rss_bytes', mem_cache: 'memory_cache_bytes',
    processes: 'processes', threads: 'threads', fds: 'file_descriptors', sockets: 'sockets',
  };
  const EGRESS_CLASSES = ['pod', 'service', 'node', 'external'];
  const SERIES_KEYS = Object.keys(RATES).concat(Object.keys(GAUGES),
    ['throttled_pct', 'cpu_quota', 'mem_limit'], EGRESS_CLASSES.map((c) => 'eg_' + c));

  const state = {
    rows: new Map(), // id → record (see newRecord)
    machine: {},
    events: [], // {t, id, kind, count}, oldest first
    now: 0, // time of the latest snapshot, seconds
    first: 0, // time of the first snapshot this page saw
    snapshots: 0,
    selected: '/',
    focused: '/',
    expanded: new Set(['/']),
    collapsed: new Set(), // nodes the user closed (overrides DEFAULT_EXPANDED)
    filter: '',
    paused: false,
  };

  function newRecord(id, labels, isNew) {
    const series = {};
    for (const k of SERIES_KEYS) series[k] = [];
    return {
      id, labels, isNew, removed: false, retired: false, goneAt: null,
      firstSeen: state.now, lastSeen: state.now, t: [], series, raw: null, rawEgress: {}, rawTime: 0,
      last: {}, quota: 0,
    };
  }

  function parentOf(id) {
    if (id === '/') return null;
    const i = id.lastIndexOf('/');
    return i <= 0 ? '/' : id.slice(0, i);
  }
  function isWithin(id, ancestor) {
    return ancestor === '/' || id === ancestor || id.startsWith(ancestor + '/');
  }

  // One snapshot into the history: rates against the row's previous snapshot,
  // events from counters that moved and rows that came or went.
  function ingest(snap) {
    const t = snap.time_ms / 1000;
    if (t <= state.now) return;
    const first = state.snapshots === 0;
    state.now = t;
    if (first) state.first = t;
    state.snapshots++;
    state.machine = snap.machine || {};
    const seen = new Set();
    const moved = { oom: new Map(), crash: new Map() };
    for (const row of snap.rows) {
      seen.add(row.id);
      let rec = state.rows.get(row.id);
      const created = !rec;
      if (created) {
        rec = newRecord(row.id, row.labels || {}, !first);
        state.rows.set(row.id, rec);
        if (!first) {
          const start = row.values.start_time_seconds;
          const at = start && start > t - WINDOW_S && start <= t ? start : t;
          addEvent(at, row.id, 'start');
        }
      }
      rec.labels = row.labels || {};
      rec.lastSeen = t;
      if (row.removed && !rec.removed) {
        rec.removed = true;
        rec.goneAt = t;
        if (!first) addEvent(t, row.id, 'gone');
      } else if (!row.removed && rec.removed) {
        // The same path again: a new cgroup (a restarted service).
        rec.removed = false; rec.retired = false; rec.goneAt = null;
      }
      for (const [kind, key] of [['oom', 'oom_kills'], ['crash', 'crashes']]) {
        const now = row.values[key];
        if (now == null) continue;
        const before = rec.raw ? rec.raw[key] : created && !first ? 0 : now;
        if (before != null && now > before) moved[kind].set(row.id, now - before);
      }
      record(rec, row, t);
    }
    for (const [kind, deltas] of Object.entries(moved)) attribute(kind, deltas, t);
    for (const rec of state.rows.values()) {
      if (seen.has(rec.id)) continue;
      if (!rec.removed || !rec.retired) {
        // Past its grace period (or never seen removed): gone from the collection.
        if (!rec.removed) { rec.goneAt = rec.lastSeen; addEvent(rec.lastSeen, rec.id, 'gone'); }
        rec.removed = true;
        rec.retired = true;
      }
      if (rec.lastSeen < t - WINDOW_S) state.rows.delete(rec.id);
    }
    while (state.events.length && state.events[0].t < t - WINDOW_S) state.events.shift();
  }

  // A kill counts on every ancestor (hierarchical counters): mark it on the deepest
  // row that explains it, i.e. where the increase is more than its children's.
  function attribute(kind, deltas, t) {
    const childSum = new Map();
    for (const [id, delta] of deltas) {
      for (let p = parentOf(id); p !== null; p = parentOf(p)) {
        if (deltas.has(p)) { childSum.set(p, (childSum.get(p) || 0) + delta); break; }
      }
    }
    for (const [id, delta] of deltas) {
      const own = delta - (childSum.get(id) || 0);
      if (own > 0) addEvent(t, id, kind, own);
    }
  }

  function addEvent(t, id, kind, count) {
    state.events.push({ t, id, kind, count: count || 1 });
    state.events.sort((a, b) => a.t - b.t);
  }

  function record(rec, row, t) {
    const v = row.values;
    const prev = rec.raw;
    const dt = prev ? t - rec.rawTime : 0;
    const rate = (key) => {
      if (!prev || dt <= 0 || v[key] == null || prev[key] == null) return null;
      const d = v[key] - prev[key];
      return d < 0 ? null : d / dt; // a counter reset: no point rather than a spike
    };
    const out = {};
    for (const [k, key] of Object.entries(RATES)) out[k] = rate(key);
    for (const [k, key] of Object.entries(GAUGES)) out[k] = v[key] == null ? null : v[key];
    const periods = rate('cpu_periods');
    const throttled = rate('cpu_throttled_periods');
    out.throttled_pct = periods > 0 && throttled != null ? (100 * throttled) / periods : periods === 0 ? 0 : null;
    rec.quota = v.cpu_quota_us > 0 && v.cpu_period_us > 0 ? v.cpu_quota_us / v.cpu_period_us : 0;
    out.cpu_quota = rec.quota > 0 ? rec.quota : null;
    const limit = v.memory_limit_bytes;
    const total = state.machine.memory_bytes;
    out.mem_limit = limit > 0 && (!total || limit < total) ? limit : null;
    const egress = row.egress_bytes || {};
    for (const c of EGRESS_CLASSES) {
      const now = egress[c];
      const before = rec.rawEgress[c];
      out['eg_' + c] = prev && dt > 0 && now != null && before != null && now >= before ? (now - before) / dt : null;
    }
    if (prev || !rec.t.length) {
      rec.t.push(t);
      for (const k of SERIES_KEYS) rec.series[k].push(out[k]);
    }
    rec.raw = v;
    rec.rawEgress = egress;
    rec.rawTime = t;
    rec.last = out;
    // Trim in batches: the x scale shows the window anyway.
    if (rec.t.length > 64 && rec.t[0] < t - WINDOW_S - 60) {
      const keep = rec.t.findIndex((x) => x >= t - WINDOW_S);
      rec.t.splice(0, keep);
      for (const k of SERIES_KEYS) rec.series[k].splice(0, keep);
    }
  }

  // ---------------------------------------------------------------- naming
  const HEX64 = /^[0-9a-f]{64}$/;
  function segment(id) { return id === '/' ? '/' : id.slice(id.lastIndexOf('/') + 1); }
  function kindOf(id, labels) {
    if (id === '/') return 'host';
    const seg = segment(id);
    if (labels.container) return 'container';
    if (/\.slice$/.test(seg)) return /pod[0-9a-f_]{20,}/.test(seg) ? 'pod' : 'slice';
    if (/^pod[0-9a-f-]{20,}$/.test(seg) || (labels.pod && !labels.container)) return 'pod';
    if (HEX64.test(seg) || /^(cri-containerd|crio|docker|libpod)-[0-9a-f]{64}\.scope$/.test(seg)) return 'container';
    return 'cgroup';
  }
  const KIND_BADGE = { host: 'H', slice: 'S', pod: 'P', container: 'C', cgroup: 'G' };
  const KIND_TITLE = { host: 'host (root cgroup)', slice: 'slice', pod: 'pod', container: 'container', cgroup: 'cgroup' };
  function displayName(id, labels) {
    if (id === '/') return 'host';
    if (labels.container) return labels.container;
    if (labels.pod) return labels.pod;
    const seg = segment(id);
    const hex = seg.match(/([0-9a-f]{64})/);
    if (hex) return hex[1].slice(0, 12);
    return seg;
  }
  function secondary(labels) {
    const parts = [];
    if (labels.pod) parts.push(labels.namespace ? labels.namespace + '/' + labels.pod : labels.pod);
    else if (labels.name) parts.push(labels.name);
    return parts.join(' ');
  }

  // ---------------------------------------------------------------- tree
  const treeEl = document.getElementById('tree');
  const nodeEls = new Map(); // id → li

  // Every row and the ancestors of every row (paths the collection does not export
  // still show, without figures), with children sorted by name.
  function buildTree() {
    const children = new Map();
    const ensure = (id) => {
      if (children.has(id)) return;
      children.set(id, []);
      const p = parentOf(id);
      if (p !== null) { ensure(p); children.get(p).push(id); }
    };
    ensure('/');
    for (const id of state.rows.keys()) ensure(id);
    for (const list of children.values()) list.sort(compareNodes);
    return children;
  }
  function compareNodes(a, b) {
    const ra = state.rows.get(a);
    const rb = state.rows.get(b);
    const ga = ra && ra.removed ? 1 : 0;
    const gb = rb && rb.removed ? 1 : 0;
    if (ga !== gb) return ga - gb; // live first, gone at the bottom
    return segment(a).localeCompare(segment(b));
  }
  function isExpanded(id) {
    if (state.collapsed.has(id)) return false;
    return state.expanded.has(id) || DEFAULT_EXPANDED.test(segment(id));
  }
  function matches(id) {
    const rec = state.rows.get(id);
    const labels = rec ? rec.labels : {};
    const hay = [id, labels.name, labels.pod, labels.namespace, labels.container, labels.image].join(' ').toLowerCase();
    return hay.includes(state.filter);
  }

  // The visible nodes in order: a depth-first walk of expanded nodes, or with a
  // filter, every match and its ancestors.
  function visibleNodes(children) {
    const out = [];
    let keep = null;
    if (state.filter) {
      keep = new Set();
      for (const id of children.keys()) {
        if (!matches(id)) continue;
        for (let p = id; p !== null && !keep.has(p); p = parentOf(p)) keep.add(p);
      }
    }
    const walk = (id, level) => {
      if (keep && !keep.has(id)) return;
      out.push({ id, level });
      const open = keep ? true : isExpanded(id);
      if (open) for (const c of children.get(id)) walk(c, level + 1);
    };
    walk('/', 1);
    return out;
  }

  function renderTree() {
    const children = buildTree();
    const visible = visibleNodes(children);
    const visibleIds = new Set(visible.map((n) => n.id));
    if (!visibleIds.has(state.focused)) state.focused = visibleIds.has(state.selected) ? state.selected : '/';
    let cursor = treeEl.firstChild;
    for (const node of visible) {
      let el = nodeEls.get(node.id);
      if (!el) {
        el = createNode(node.id);
        nodeEls.set(node.id, el);
      }
      updateNode(el, node, children.get(node.id).length > 0);
      if (el === cursor) cursor = cursor.nextSibling;
      else treeEl.insertBefore(el, cursor);
    }
    for (const [id, el] of nodeEls) {
      if (!visibleIds.has(id)) { el.remove(); if (!children.has(id)) nodeEls.delete(id); }
    }
  }

  function createNode(id) {
    const li = document.createElement('li');
    li.className = 'node';
    li.setAttribute('role', 'treeitem');
    li.dataset.id = id;
    li.innerHTML = '<span class="twisty" aria-hidden="true"></span><span class="kind" aria-hidden="true"></span>' +
      '<span class="label"></span><span class="tags"></span><span class="figure" aria-hidden="true"></span>';
    return li;
  }

  function updateNode(el, node, hasChildren) {
    const rec = state.rows.get(node.id);
    const labels = rec ? rec.labels : {};
    const kind = kindOf(node.id, labels);
    const gone = !!(rec && rec.removed);
    el.setAttribute('aria-level', String(node.level));
    el.style.paddingLeft = 4 + (node.level - 1) * 14 + 'px';
    const open = state.filter ? true : isExpanded(node.id);
    if (hasChildren) el.setAttribute('aria-expanded', String(open));
    else el.removeAttribute('aria-expanded');
    el.setAttribute('aria-selected', String(node.id === state.selected));
    el.tabIndex = node.id === state.focused ? 0 : -1;
    el.dataset.state = !rec ? 'virtual' : gone ? 'gone' : 'live';
    el.classList.toggle('gone', gone);
    el.title = node.id + (gone ? goneText(rec) : '');
    setText(el.children[0], hasChildren ? (open ? '▾' : '▸') : '');
    const badge = el.children[1];
    setText(badge, KIND_BADGE[kind]);
    badge.className = 'kind k-' + kind;
    badge.title = KIND_TITLE[kind];
    const name = displayName(node.id, labels);
    const second = secondary(labels);
    const label = el.children[2];
    const html = escapeHtml(name) + (second && second !== name ? '<small>' + escapeHtml(second) + '</small>' : '');
    if (label.innerHTML !== html) label.innerHTML = html;
    const tags = [];
    if (gone) tags.push(['gone', 'gone']);
    const own = state.events.filter((e) => e.id === node.id);
    if (own.some((e) => e.kind === 'oom')) tags.push(['oom', 'OOM']);
    if (own.some((e) => e.kind === 'crash')) tags.push(['crash', 'crash']);
    const tagHtml = tags.map(([c, text]) => '<span class="tag ' + c + '">' + text + '</span>').join('');
    if (el.children[3].innerHTML !== tagHtml) el.children[3].innerHTML = tagHtml;
    el.setAttribute('aria-label', KIND_TITLE[kind] + ' ' + name + (second ? ', ' + second : '') + (gone ? ', gone' : '') +
      (tags.some((t) => t[0] === 'oom') ? ', OOM kill' : ''));
    let figure = '';
    if (rec && !gone && rec.last) {
      figure = fmtCores(rec.last.cpu) + ' · ' + fmtBytes(rec.last.mem_ws);
    }
    setText(el.children[4], figure);
  }

  function goneText(rec) {
    return rec.retired ? ' (gone since ' + fmtClock(rec.goneAt) + ', no longer reported)'
      : ' (removed ' + fmtClock(rec.goneAt) + ', final values kept for the grace period)';
  }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  // Keyboard: the WAI-ARIA tree pattern (arrows, Home/End, Enter/Space selects).
  function onTreeKey(ev) {
    const items = Array.from(treeEl.children);
    const index = items.findIndex((el) => el.dataset.id === state.focused);
    const here = items[index];
    if (!here) return;
    const id = here.dataset.id;
    let target = null;
    switch (ev.key) {
      case 'ArrowDown': target = items[Math.min(index + 1, items.length - 1)]; break;
      case 'ArrowUp': target = items[Math.max(index - 1, 0)]; break;
      case 'Home': target = items[0]; break;
      case 'End': target = items[items.length - 1]; break;
      case 'ArrowRight':
        if (here.getAttribute('aria-expanded') === 'false') { setExpanded(id, true); }
        else if (here.getAttribute('aria-expanded') === 'true') target = items[index + 1];
        break;
      case 'ArrowLeft':
        if (here.getAttribute('aria-expanded') === 'true') { setExpanded(id, false); }
        else {
          const parent = parentOf(id);
          target = parent !== null ? nodeEls.get(parent) : null;
        }
        break;
      case 'Enter': case ' ': select(id); break;
      default: return;
    }
    ev.preventDefault();
    if (target) focusNode(target.dataset.id);
  }
  function focusNode(id) {
    state.focused = id;
    renderTree();
    const el = nodeEls.get(id);
    if (el) { el.focus(); el.scrollIntoView({ block: 'nearest' }); }
  }
  function setExpanded(id, open) {
    if (open) { state.expanded.add(id); state.collapsed.delete(id); }
    else { state.expanded.delete(id); state.collapsed.add(id); }
    renderTree();
  }
  function select(id) {
    state.selected = id;
    state.focused = id;
    for (let p = parentOf(id); p !== null; p = parentOf(p)) { state.expanded.add(p); state.collapsed.delete(p); }
    history.replaceState(null, '', '#cgroup=' + encodeURIComponent(id));
    renderTree();
    renderSelection(true);
  }

  // ---------------------------------------------------------------- charts
  const COLORS = { blue: '#1f6feb', green: '#1a7f37', orange: '#e16f24', red: '#d1242f', purple: '#8250df', teal: '#0e7490', grey: '#6e7781' };
  const EVENT_COLORS = { oom: '#d1242f', crash: '#bf5b00', start: '#1a7f37', gone: '#8a93a3' };
  // Each card: its series (key, label, colour, dashed), how values print, and when
  // it applies to a row.
  const CHARTS = [
    {
      key: 'cpu', title: 'CPU', unit: 'cores', fmt: fmtCores,
      series: [['cpu', 'total', COLORS.blue], ['cpu_user', 'user', COLORS.green], ['cpu_system', 'system', COLORS.orange], ['cpu_quota', 'quota', COLORS.red, true]],
      absent: 'No CPU time counted for this cgroup.',
      now: (l) => fmtCores(l.cpu) + ' cores',
    },
    {
      key: 'throttling', title: 'CPU throttling', unit: 'share of CFS periods throttled', fmt: fmtPct,
      series: [['throttled_pct', 'throttled periods', COLORS.red]],
      applies: (rec) => rec.quota > 0,
      absent: 'No CPU quota on this cgroup: it is never throttled.',
      now: (l) => fmtPct(l.throttled_pct),
    },
    {
      key: 'memory', title: 'Memory', unit: 'bytes', fmt: fmtBytes,
      series: [['mem_usage', 'usage', COLORS.blue], ['mem_ws', 'working set', COLORS.purple], ['mem_rss', 'rss', COLORS.teal], ['mem_cache', 'cache', COLORS.grey], ['mem_limit', 'limit', COLORS.red, true]],
      absent: 'No memory accounting for this cgroup (no memory controller here).',
      now: (l) => fmtBytes(l.mem_ws) + ' working set',
    },
    {
      key: 'processes', title: 'Processes', unit: 'count', fmt: fmtCount,
      series: [['processes', 'processes', COLORS.blue], ['threads', 'threads', COLORS.purple], ['fds', 'file descriptors', COLORS.teal], ['sockets', 'sockets', COLORS.orange]],
      absent: 'No process counts for this cgroup.',
      now: (l) => fmtCount(l.processes) + (l.processes === 1 ? ' process' : ' processes'),
    },
    {
      key: 'network', title: 'Network', unit: 'interfaces of its network namespace', fmt: fmtRate,
      series: [['net_rx', 'receive', COLORS.blue], ['net_tx', 'transmit', COLORS.orange]],
      absent: 'No interface counters on this row: its network namespace is shown on another row (the host\u2019s on the root).',
      now: (l) => '↓ ' + fmtRate(l.net_rx) + '  ↑ ' + fmtRate(l.net_tx),
    },
    {
      key: 'sockets', title: 'Socket traffic', unit: 'its own sockets (kernel counters)', fmt: fmtRate,
      series: [['sock_rx', 'receive', COLORS.blue], ['sock_tx', 'transmit', COLORS.orange]],
      absent: 'No socket traffic counted for this cgroup (or the socket metric group is off).',
      now: (l) => '↓ ' + fmtRate(l.sock_rx) + '  ↑ ' + fmtRate(l.sock_tx),
    },
    {
      key: 'egress', title: 'Egress by destination', unit: 'bytes sent, by destination class', fmt: fmtRate,
      series: [['eg_pod', 'pod', COLORS.blue], ['eg_service', 'service', COLORS.purple], ['eg_node', 'node', COLORS.teal], ['eg_external', 'external', COLORS.orange]],
      absent: 'No egress counted for this cgroup (or the socket metric group is off).',
      now: (l) => fmtRate(EGRESS_CLASSES.reduce((s, c) => s + (l['eg_' + c] || 0), 0)),
    },
    {
      key: 'io', title: 'Block IO', unit: 'bytes read and written', fmt: fmtRate,
      series: [['io_read', 'read', COLORS.blue], ['io_write', 'write', COLORS.orange]],
      absent: 'No block IO accounting for this cgroup (no io/blkio controller here).',
      now: (l) => 'r ' + fmtRate(l.io_read) + '  w ' + fmtRate(l.io_write),
    },
  ];

  const charts = {}; // key → {def, card, plot, note, nowEl}
  const chartsEl = document.getElementById('charts');

  const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];
  function axisFor(fmt) {
    return {
      incrs: fmt === fmtCount ? COUNT_INCRS : undefined,
      stroke: '#5d6778', size: 66, grid: { stroke: '#eef0f3' }, ticks: { stroke: '#dde1e6', size: 4 },
      values: (u, vals) => vals.map((v) => (fmt === fmtRate ? fmtRateShort(v) : fmt(v))),
    };
  }
  // The window, or less while the page is young (at least a minute), so the first
  // points are not squeezed against the right edge.
  function xScale() {
    return { time: true, range: () => [Math.max(state.now - WINDOW_S, Math.min(state.first, state.now - 60)), state.now] };
  }
  function xAxis() {
    return {
      stroke: '#5d6778', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#dde1e6', size: 4 }, space: 70, size: 26,
      values: (u, splits) => {
        const span = u.scales.x.max - u.scales.x.min;
        return splits.map((v) => (span > 180 ? fmtClock(v).slice(0, 5) : fmtClock(v)));
      },
    };
  }

  // Vertical lines at the selection's events, drawn through uPlot's draw hook.
  function markersPlugin() {
    return {
      hooks: {
        draw: [(u) => {
          const events = markersFor(state.selected);
          if (!events.length) return;
          const ctx = u.ctx;
          const { left, top, width, height } = u.bbox;
          ctx.save();
          ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
          ctx.setLineDash([6, 4]);
          for (const e of events) {
            const x = Math.round(u.valToPos(e.t, 'x', true));
            if (x < left || x > left + width) continue;
            ctx.strokeStyle = EVENT_COLORS[e.kind];
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }
  // With the cursor off the chart, the legend shows the latest values.
  function latestInLegend() {
    const latest = (u) => {
      if (u.cursor.idx == null && u.data[0].length) u.setLegend({ idx: u.data[0].length - 1 });
    };
    return { hooks: { setData: [latest], setCursor: [latest] } };
  }
  function markersFor(id) {
    return state.events.filter((e) => e.id === id || (isWithin(e.id, id) && (e.kind === 'oom' || e.kind === 'crash')));
  }

  function createCharts() {
    for (const def of CHARTS) {
      const card = document.createElement('section');
      card.className = 'card-chart';
      card.dataset.chart = def.key;
      card.setAttribute('aria-label', def.title);
      card.innerHTML = '<h3>' + escapeHtml(def.title) + ' <small>' + escapeHtml(def.unit) + '</small><span class="now"></span></h3>' +
        '<div class="chart"></div><div class="note" hidden></div>';
      chartsEl.appendChild(card);
      const chartEl = card.querySelector('.chart');
      const opts = {
        width: Math.max(200, chartEl.clientWidth || 400),
        height: CHART_HEIGHT,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: xScale(), y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [xAxis(), axisFor(def.fmt)],
        series: [{ value: (u, v) => (v == null ? '–' : fmtClock(v)) }].concat(def.series.map(([, label, color, dashed]) => ({
          label, stroke: color, width: 1.5, dash: dashed ? [6, 4] : undefined,
          fill: dashed ? undefined : color + '14',
          // A young row has a point or two: dots, since a line needs two.
          points: { show: (u) => u.data[0].length <= 3, size: 6, fill: color },
          value: (u, v) => def.fmt(v),
        }))),
        plugins: [markersPlugin(), latestInLegend()],
      };
      const plot = new uPlot(opts, emptyData(def.series.length), chartEl);
      charts[def.key] = { def, card, plot, chartEl, note: card.querySelector('.note'), nowEl: card.querySelector('.now') };
    }
    charts.timeline = createTimeline();
    new ResizeObserver(resizeCharts).observe(chartsEl);
  }

  function emptyData(n) {
    const data = [[]];
    for (let i = 0; i < n; i++) data.push([]);
    return data;
  }

  // The timeline: one lane per kind of event, points only.
  const LANES = [['crash', 'crash'], ['oom', 'OOM kill'], ['gone', 'gone'], ['start', 'started']];
  function createTimeline() {
    const el = document.getElementById('timeline');
    const opts = {
      width: Math.max(200, el.clientWidth || 600),
      height: 112,
      cursor: { drag: { x: false, y: false }, points: { size: 10 } },
      legend: { show: false },
      scales: { x: xScale(), y: { range: [0.5, LANES.length + 0.5] } },
      axes: [
        xAxis(),
        { stroke: '#5d6778', size: 64, splits: () => LANES.map((_, i) => i + 1), values: (u, vals) => vals.map((v) => (LANES[v - 1] || [, ''])[1]), grid: { stroke: '#eef0f3' } },
      ],
      series: [{ value: (u, v) => (v == null ? '–' : fmtClock(v)) }].concat(LANES.map(([kind, label]) => ({
        label, stroke: EVENT_COLORS[kind], fill: EVENT_COLORS[kind], width: 0, paths: () => null,
        points: { show: true, size: 11, fill: EVENT_COLORS[kind], stroke: EVENT_COLORS[kind] },
        value: (u, v, si, i) => (v == null ? '' : timelineLabel(kind, i)),
      }))),
    };
    const plot = new uPlot(opts, emptyData(LANES.length), el);
    return { plot, chartEl: el, events: [] };
  }
  function timelineLabel(kind, i) {
    const e = charts.timeline.events[i];
    return e && e.kind === kind ? displayName(e.id, (state.rows.get(e.id) || {}).labels || {}) + (e.count > 1 ? ' ×' + e.count : '') : '';
  }

  function resizeCharts() {
    for (const c of Object.values(charts)) {
      const w = c.chartEl.clientWidth;
      if (w > 0 && Math.abs(w - c.plot.width) > 2) c.plot.setSize({ width: w, height: c.plot.height });
    }
  }

  function renderSelection(changed) {
    const id = state.selected;
    const rec = state.rows.get(id);
    const labels = rec ? rec.labels : {};
    setText(document.getElementById('sel-name'), (id === '/' ? 'host' : displayName(id, labels)) + (id === '/' ? '' : '  ·  ' + KIND_TITLE[kindOf(id, labels)]));
    const pathEl = document.getElementById('sel-path');
    setText(pathEl, id);
    pathEl.title = id;
    const meta = [];
    if (labels.namespace || labels.pod) meta.push('pod ' + (labels.namespace ? labels.namespace + '/' : '') + (labels.pod || ''));
    if (labels.name) meta.push('runtime name ' + labels.name);
    if (labels.image) meta.push('image ' + labels.image);
    if (rec && rec.raw && rec.raw.start_time_seconds) meta.push('started ' + new Date(rec.raw.start_time_seconds * 1000).toLocaleString());
    setText(document.getElementById('sel-meta'), meta.join('  ·  '));
    const badge = document.getElementById('sel-state');
    badge.className = 'badge ' + (!rec ? '' : rec.removed ? 'gone' : 'live');
    setText(badge, !rec ? 'not a cgroup row' : rec.removed ? 'gone' + goneText(rec).replace(/^ \(|\)$/g, ': ').replace(/: $/, '') : 'live');
    badge.dataset.state = !rec ? 'virtual' : rec.removed ? 'gone' : 'live';
    for (const def of CHARTS) {
      const c = charts[def.key];
      const keys = def.series.map((s) => s[0]);
      const has = !!rec && keys.some((k) => rec.series[k].some((v) => v != null)) && (!def.applies || def.applies(rec));
      c.note.hidden = has;
      c.chartEl.hidden = !has;
      if (!has) {
        const young = rec && rec.t.length < 2 && !rec.removed && keys.some((k) => k in RATES || k.startsWith('eg_'));
        setText(c.note, !rec ? 'No values: this path is not exported as a row.'
          : young ? 'Rates appear with the second update.' : def.absent || 'Not collected for this cgroup.');
        setText(c.nowEl, '');
        continue;
      }
      const data = [rec.t.slice()].concat(keys.map((k) => rec.series[k].slice()));
      c.plot.setData(data, true);
      setText(c.nowEl, rec.removed ? 'final values' : def.now(rec.last));
      if (changed) resizeCharts();
    }
    renderTimeline(id);
  }

  function renderTimeline(id) {
    const tl = charts.timeline;
    const events = state.events.filter((e) => isWithin(e.id, id));
    tl.events = events;
    const xs = events.map((e) => e.t);
    const data = [xs].concat(LANES.map(([kind], lane) => events.map((e) => (e.kind === kind ? lane + 1 : null))));
    tl.plot.setData(data, true);
  }

  // ---------------------------------------------------------------- summary, events
  function renderSummary() {
    const m = state.machine;
    const root = state.rows.get('/');
    const l = root ? root.last : {};
    const cores = m.cpu_cores;
    setText(document.getElementById('host'), [m.os_version, m.kernel_version && 'kernel ' + m.kernel_version].filter(Boolean).join(' · ') || 'host');
    document.getElementById('host').title = 'machine id ' + (m.machine_id || 'unknown');
    setText(document.getElementById('sum-cpu'), fmtCores(l.cpu) + ' / ' + (cores || '?') + ' cores');
    setBar('bar-cpu', cores ? l.cpu / cores : 0);
    setText(document.getElementById('sum-mem'), fmtBytes(l.mem_ws).replace(/ GiB$/, '') + ' / ' + fmtBytes(m.memory_bytes));
    setBar('bar-mem', m.memory_bytes ? l.mem_ws / m.memory_bytes : 0);
    setText(document.getElementById('sum-proc'), fmtCount(l.processes) + (l.threads != null ? ' (' + fmtCount(l.threads) + ' threads)' : ''));
    setText(document.getElementById('sum-net'), '↓' + fmtRateShort(l.net_rx) + ' ↑' + fmtRateShort(l.net_tx));
    setText(document.getElementById('sum-io'), 'r ' + fmtRateShort(l.io_read) + ' w ' + fmtRateShort(l.io_write));
    let live = 0;
    let gone = 0;
    for (const rec of state.rows.values()) rec.removed ? gone++ : live++;
    setText(document.getElementById('sum-rows'), live + ' live · ' + gone + ' gone');
  }
  function setBar(id, share) {
    document.getElementById(id).style.width = Math.max(0, Math.min(1, share || 0)) * 100 + '%';
  }

  const EVENT_TEXT = { oom: 'OOM', crash: 'crash', start: 'start', gone: 'gone' };
  function renderEvents() {
    const list = document.getElementById('events');
    const shown = state.events.filter((e) => e.kind === 'oom' || e.kind === 'crash' || shortLived(e.id));
    const key = shown.map((e) => e.t + e.id + e.kind).join('|');
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.textContent = '';
    if (!shown.length) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'No OOM kills, crashes or short-lived cgroups yet.';
      list.appendChild(li);
      return;
    }
    for (const e of shown.slice().reverse()) {
      const rec = state.rows.get(e.id);
      const li = document.createElement('li');
      li.dataset.kind = e.kind;
      li.dataset.id = e.id;
      const name = displayName(e.id, rec ? rec.labels : {});
      li.innerHTML = '<time>' + fmtClock(e.t) + '</time><span class="ev ' + e.kind + '">' + EVENT_TEXT[e.kind] +
        (e.count > 1 ? ' ×' + e.count : '') + '</span><button type="button"></button>';
      const button = li.querySelector('button');
      button.textContent = name;
      button.title = e.id;
      button.addEventListener('click', () => select(e.id));
      list.appendChild(li);
    }
  }
  // Started while this page watched, gone since: lived within the window.
  function shortLived(id) {
    const rec = state.rows.get(id);
    return !!rec && rec.isNew && rec.removed;
  }

  // ---------------------------------------------------------------- polling
  const statusEl = document.getElementById('status');
  let lastOk = 0;
  async function poll() {
    if (state.paused) return;
    const started = performance.now();
    let delay = 1000;
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      const response = await fetch(SNAPSHOT_URL, { cache: 'no-store', signal: controller.signal });
      clearTimeout(timer);
      if (!response.ok) {
        const retry = Number(response.headers.get('Retry-After'));
        if (retry > 0) delay = retry * 1000;
        throw new Error('HTTP ' + response.status);
      }
      const snap = await response.json();
      delay = snap.interval_ms || 1000;
      ingest(snap);
      render();
      lastOk = Date.now();
      statusEl.classList.remove('error');
      setText(statusEl, 'live · ' + fmtClock(state.now) + ' · ' + Math.round(performance.now() - started) + ' ms');
    } catch (err) {
      statusEl.classList.add('error');
      setText(statusEl, 'no data: ' + (err.name === 'AbortError' ? 'timed out' : err.message) + (lastOk ? ' · last ' + fmtClock(lastOk / 1000) : '') + ' · retrying');
    }
    setTimeout(poll, Math.max(0, delay - (performance.now() - started)));
  }

  function render() {
    renderSummary();
    renderTree();
    renderSelection(false);
    renderEvents();
  }

  // ---------------------------------------------------------------- wiring
  function start() {
    const hash = decodeURIComponent(location.hash.replace(/^#cgroup=/, ''));
    if (hash.startsWith('/')) { state.selected = hash; state.focused = hash; }
    createCharts();
    treeEl.addEventListener('keydown', onTreeKey);
    treeEl.addEventListener('click', (ev) => {
      const li = ev.target.closest('.node');
      if (!li) return;
      if (ev.target.classList.contains('twisty') && li.hasAttribute('aria-expanded')) {
        setExpanded(li.dataset.id, li.getAttribute('aria-expanded') !== 'true');
      } else select(li.dataset.id);
      focusNode(li.dataset.id);
    });
    const filter = document.getElementById('filter');
    filter.addEventListener('input', () => { state.filter = filter.value.trim().toLowerCase(); renderTree(); });
    filter.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowDown') { ev.preventDefault(); const first = treeEl.firstChild; if (first) focusNode(first.dataset.id); }
      if (ev.key === 'Escape') { filter.value = ''; state.filter = ''; renderTree(); }
    });
    const pause = document.getElementById('pause');
    const togglePause = () => {
      state.paused = !state.paused;
      pause.setAttribute('aria-pressed', String(state.paused));
      pause.textContent = state.paused ? 'Resume' : 'Pause';
      if (state.paused) setText(statusEl, 'paused · ' + fmtClock(state.now));
      else poll();
    };
    pause.addEventListener('click', togglePause);
    document.addEventListener('keydown', (ev) => {
      const typing = ev.target instanceof HTMLInputElement;
      if (ev.key === '/' && !typing) { ev.preventDefault(); filter.focus(); }
      if (ev.key === 'p' && !typing && !ev.ctrlKey && !ev.metaKey) togglePause();
    });
    renderTree();
    poll();
  }

  // Read-only handles for people poking around in the console (and the browser test).
  window.kadvisor = { state, charts };
  start();
})();
