// The attention report's viewer. Reads the JSON block #report-data (written by
// selfattention.viz.report) and draws heatmaps on canvases. User strings (names, tokens) are only
// ever put on the page with textContent or as attribute values, never parsed as HTML.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function showError(msg) {
    var e = $("error");
    e.textContent = msg;
    e.hidden = false;
  }

  // ---------- data ----------------------------------------------------------------------------
  // base64 -> bytes; numbers inside are little-endian, read through DataViews
  function bytes(b64) {
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  // deflated bytes (zlib format) -> Promise of bytes, by the browser's own DecompressionStream
  function inflate(b64) {
    var stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) { return new Uint8Array(buf); });
  }

  function floats(b) {
    var view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    var f = new Float32Array(b.length / 4);
    for (var k = 0; k < f.length; k++) f[k] = view.getFloat32(4 * k, true);
    return f;
  }

  // An encoded array (see viz/_compact.py) -> Promise of a store with map(offset, size): the
  // float values of one map. "f4" and "u2" are decoded whole; "u1" (8-bit rows with a maximum
  // each, deflated) keeps its bytes and turns a map into floats only when it is first shown.
  function store(v, rowLength) {
    if (!v) return Promise.resolve(null);
    if (v.dtype === "u1") {
      return inflate(v.data).then(function (q) {
        var rows = floats(bytes(v.rows)), done = {};
        return { map: function (off, size) {
          if (done[off]) return done[off];
          // maps start on a row boundary and hold whole rows: one factor per row
          var out = new Float32Array(size);
          for (var r0 = off / rowLength, e = 0; e < size; r0++) {
            var f = rows[r0] / v.levels;
            for (var end = e + rowLength; e < end; e++) out[e] = q[off + e] * f;
          }
          done[off] = out;
          return out;
        } };
      });
    }
    var all;
    if (v.dtype === "f4") all = floats(bytes(v.data));
    else {
      var b = bytes(v.data), view = new DataView(b.buffer), step = (v.hi - v.lo) / 65535;
      all = new Float32Array(b.length / 2);
      for (var i = 0; i < all.length; i++) all[i] = v.lo + view.getUint16(2 * i, true) * step;
    }
    return Promise.resolve({ map: function (off, size) { return all.subarray(off, off + size); } });
  }

  var DATA = JSON.parse($("report-data").textContent);
  var cache = {};

  // Promise of the decoded sequence ``index`` (decoded once, when first chosen)
  function sequence(index) {
    if (cache[index]) return Promise.resolve(cache[index]);
    var raw = DATA.sequences[index];
    var parts = [raw.w, raw.mean, raw.rollout, raw.flow, raw.vnorm,
                 raw.neuron ? raw.neuron.q : null, raw.neuron ? raw.neuron.k : null];
    return Promise.all(parts.map(function (v) { return store(v, raw.nk); })).then(function (st) {
      var s = {
        name: raw.name, layers: raw.layers, heads: raw.heads, nq: raw.nq, nk: raw.nk,
        x: raw.x, y: raw.y, precision: raw.precision, w: st[0], mean: st[1], rollout: st[2],
        flow: st[3], flowNote: raw.flowNote, vnorm: st[4], neuronNote: raw.neuronNote || null,
        neuron: raw.neuron ? { d: raw.neuron.d, q: st[5], k: st[6] } : null,
        patches: null, image: null, maps: {}
      };
      if (raw.patches) {
        s.patches = { h: raw.patches.h, w: raw.patches.w, cls: raw.patches.cls,
                      rgba: new Uint8ClampedArray(bytes(raw.patches.rgba).buffer) };
      }
      if (raw.image) {
        s.image = { h: raw.image.h, w: raw.image.w, grid: raw.image.grid,
                    rgba: new Uint8ClampedArray(bytes(raw.image.rgba).buffer) };
      }
      cache[index] = s;
      return s;
    });
  }

  // one head's attention map α (nq * nk), layer position li, head position h
  function headMap(s, li, h) {
    var size = s.nq * s.nk;
    return s.w.map((li * s.heads.length + h) * size, size);
  }

  // ‖α_ij v_j W_o^h‖ = α_ij · ‖v_j W_o^h‖ (Kobayashi et al., 2020)
  function valueMap(s, li, h) {
    var key = "v" + li + "/" + h;
    if (s.maps[key]) return s.maps[key];
    var a = headMap(s, li, h), norms = s.vnorm.map((li * s.heads.length + h) * s.nk, s.nk);
    var out = new Float32Array(a.length);
    for (var e = 0; e < a.length; e++) out[e] = a[e] * norms[e % s.nk];
    s.maps[key] = out;
    return out;
  }

  // the mean over heads of ``one(s, li, h)``: stored (over every head) when only some are shown
  function meanMap(s, li, value) {
    var size = s.nq * s.nk;
    if (s.mean && !value) return s.mean.map(li * size, size);
    var key = (value ? "vm" : "m") + li;
    if (s.maps[key]) return s.maps[key];
    var out = new Float32Array(size);
    for (var h = 0; h < s.heads.length; h++) {
      var m = value ? valueMap(s, li, h) : headMap(s, li, h);
      for (var e = 0; e < size; e++) out[e] += m[e] / s.heads.length;
    }
    s.maps[key] = out;
    return out;
  }

  // the (nq * nk) map for layer position li and head choice ("mean", "rollout", "flow" or a
  // head position), as attention weights or (measure "value") value-weighted
  function mapOf(s, li, head, measure) {
    var size = s.nq * s.nk, value = measure === "value" && !!s.vnorm;
    if (head === "mean") return meanMap(s, li, value);
    if (head === "rollout") return s.rollout.map(li * size, size);
    if (head === "flow") return s.flow.map(0, size);
    return value ? valueMap(s, li, head) : headMap(s, li, head);
  }

  // ---------- colours: a white-to-blue scale (matplotlib's "Blues" stops) ----------------------
  var STOPS = [[247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214],
               [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107]];
  var LUT = new Uint8ClampedArray(256 * 3);
  (function () {
    for (var t = 0; t < 256; t++) {
      var pos = t / 255 * (STOPS.length - 1);
      var i = Math.min(Math.floor(pos), STOPS.length - 2);
      var f = pos - i;
      for (var c = 0; c < 3; c++) LUT[3 * t + c] = STOPS[i][c] + f * (STOPS[i + 1][c] - STOPS[i][c]);
    }
  })();

  function level(v, hi) {
    if (!(hi > 0)) return 0;
    var t = v / hi;
    return Math.round(255 * (t < 0 ? 0 : t > 1 ? 1 : t));
  }

  // the top of the colour scale for each row, under the chosen scale mode
  function rowTops(m, nq, nk, mode) {
    var tops = new Float64Array(nq);
    var all = 0;
    for (var r = 0; r < nq; r++) {
      var top = 0;
      for (var k = 0; k < nk; k++) if (m[r * nk + k] > top) top = m[r * nk + k];
      tops[r] = top;
      if (top > all) all = top;
    }
    if (mode === "row") return { rows: tops, hi: null };
    var hi = mode === "unit" ? Math.max(1, all) : all;
    for (var q = 0; q < nq; q++) tops[q] = hi;
    return { rows: tops, hi: hi };
  }

  function paint(canvas, m, nq, nk, tops) {
    canvas.width = nk;
    canvas.height = nq;
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(nk, nq);
    for (var r = 0; r < nq; r++) {
      for (var k = 0; k < nk; k++) {
        var t = level(m[r * nk + k], tops[r]);
        var p = 4 * (r * nk + k);
        img.data[p] = LUT[3 * t]; img.data[p + 1] = LUT[3 * t + 1]; img.data[p + 2] = LUT[3 * t + 2];
        img.data[p + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function fmt(v) {
    if (v === 0) return "0";
    return Math.abs(v) >= 0.001 ? v.toFixed(4) : v.toExponential(2);
  }

  // ---------- state -----------------------------------------------------------------------------
  // rows: the selected query rows (ctrl/shift-click adds one); row: the last one clicked;
  // key: the key of the last clicked cell (the neuron view's j)
  var state = { seq: 0, layer: 0, head: "mean", scale: "view", measure: "weight",
                combine: "sum", rows: [], row: null, key: null, hover: null };
  var S = null;          // the current decoded sequence
  var M = null;          // the current map
  var TOPS = null;       // per-row colour-scale tops
  var CELL = 16;
  var DPR = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
  var OVERLAY = DPR;     // the overlay canvas's scale (lower for very large maps)
  var small = document.createElement("canvas");

  function headLabel(s, head) {
    if (head === "mean") return "mean of heads";
    if (head === "rollout") return "rollout through this layer";
    if (head === "flow") return "attention flow (all layers)";
    return "head " + s.heads[head];
  }

  function cellSize(s) {
    var n = Math.max(s.nq, s.nk);
    var c = Math.floor(720 / n);
    // long inputs: 12 px rows still fit a label and keep a 512-token canvas near 6000 px square
    return Math.max(s.patches ? 20 : n > 100 ? 12 : 15, Math.min(c, 46));
  }

  // ---------- selectors ---------------------------------------------------------------------------
  function fill(select, items) {
    select.textContent = "";
    items.forEach(function (it) {
      var o = el("option", null, it[1]);
      o.value = String(it[0]);
      select.appendChild(o);
    });
  }

  function setupSequence(s) {
    S = s;
    state.layer = Math.min(state.layer, S.layers.length - 1);
    if (state.head === "rollout" && !S.rollout) state.head = "mean";
    if (state.head === "flow" && !S.flow) state.head = "mean";
    if (typeof state.head === "number" && state.head >= S.heads.length) state.head = "mean";
    if (!S.vnorm) state.measure = "weight";
    state.rows = [];
    state.row = null;
    state.key = null;
    fill($("layer-select"), S.layers.map(function (l, i) { return [i, "layer " + l]; }));
    var heads = [["mean", "mean of heads"]];
    S.heads.forEach(function (h, i) { heads.push([i, "head " + h]); });
    if (S.rollout) heads.push(["rollout", "rollout through this layer"]);
    if (S.flow) heads.push(["flow", "attention flow (all layers)"]);
    fill($("head-select"), heads);
    $("measure-select").disabled = !S.vnorm;
    $("measure-select").title = S.vnorm ? "" : "this sequence has no value norms";
    $("precision").textContent = S.precision;
    CELL = cellSize(S);
    buildLabels();
    syncSelects();
  }

  function syncSelects() {
    $("seq-select").value = String(state.seq);
    $("layer-select").value = String(state.layer);
    $("head-select").value = String(state.head);
    $("scale-select").value = state.scale;
    $("measure-select").value = state.measure;
    $("combine-select").value = state.combine;
  }

  // ---------- labels (tokens or image patches) ----------------------------------------------------
  function patchCanvas(s, p, size) {
    var ph = s.patches.h, pw = s.patches.w;
    var c = document.createElement("canvas");
    c.width = pw;
    c.height = ph;
    var off = p * ph * pw * 4;
    var img = new ImageData(s.patches.rgba.slice(off, off + ph * pw * 4), pw, ph);
    c.getContext("2d").putImageData(img, 0, 0);
    c.style.width = size + "px";
    c.style.height = size + "px";
    return c;
  }

  // a patch picture for position k of an image sequence, or null (text label)
  function label(s, k, size) {
    var cls = s.patches ? s.patches.cls : 0;
    if (s.patches && k >= cls) return patchCanvas(s, k - cls, size);
    return null;
  }

  function buildLabels() {
    var xl = $("xlabels"), yl = $("ylabels");
    xl.textContent = "";
    yl.textContent = "";
    var longest = 1;
    S.x.forEach(function (t) { longest = Math.max(longest, t.length); });
    var xHeight = S.patches ? CELL + 6 : Math.min(150, 10 + 7 * longest);
    S.x.forEach(function (t, k) {
      var d = el("div", "tok");
      d.style.width = CELL + "px";
      d.style.height = xHeight + "px";
      d.title = "key " + k + ": " + t;
      d.dataset.k = String(k);
      d.style.lineHeight = CELL + "px";
      var pic = label(S, k, CELL - 2);
      if (pic) { d.classList.add("pic"); d.appendChild(pic); } else d.textContent = t;
      xl.appendChild(d);
    });
    S.y.forEach(function (t, k) {
      var d = el("div", "tok");
      d.style.height = CELL + "px";
      d.style.lineHeight = CELL + "px";
      d.title = "query " + k + ": " + t;
      d.dataset.k = String(k);
      var pic = S.nq === S.nk ? label(S, k, CELL - 2) : null;
      if (pic) { d.classList.add("pic"); d.appendChild(pic); } else d.textContent = t;
      yl.appendChild(d);
    });
  }

  function markLabels() {
    var xs = $("xlabels").children, ys = $("ylabels").children;
    var h = state.hover;
    for (var k = 0; k < xs.length; k++) xs[k].classList.toggle("hover", !!h && h[1] === k);
    for (var r = 0; r < ys.length; r++) {
      ys[r].classList.toggle("hover", !!h && h[0] === r);
      ys[r].classList.toggle("selected", state.rows.indexOf(r) >= 0);
    }
  }

  // ---------- heatmap ------------------------------------------------------------------------------
  function draw() {
    M = mapOf(S, state.layer, state.head, state.measure);
    var sc = rowTops(M, S.nq, S.nk, state.scale);
    TOPS = sc.rows;
    paint(small, M, S.nq, S.nk, TOPS);

    var w = S.nk * CELL, h = S.nq * CELL;
    var canvas = $("heatmap"), overlay = $("overlay");
    // the overlay's backing store is capped (outlines only): a 512-token map is ~6000 px wide
    OVERLAY = Math.min(DPR, 2048 / Math.max(w, h));
    [canvas, overlay].forEach(function (c) {
      var k = c === overlay ? OVERLAY : DPR;
      c.width = Math.round(w * k);
      c.height = Math.round(h * k);
      c.style.width = w + "px";
      c.style.height = h + "px";
    });
    if (CELL < 14) {
      // long inputs: one canvas pixel per cell, enlarged by CSS (pixelated), instead of a
      // canvas of ~6000 px square to fill
      canvas.width = S.nk;
      canvas.height = S.nq;
      canvas.getContext("2d").drawImage(small, 0, 0);
      canvas.classList.add("pixels");
    } else {
      canvas.classList.remove("pixels");
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(DPR, 0, 0, DPR, 0, 0);
    ctx.imageSmoothingEnabled = false;
    if (CELL >= 14) ctx.drawImage(small, 0, 0, w, h);
    if (CELL >= 14) {  // thin white lines between cells
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (var k = 1; k < S.nk; k++) { ctx.moveTo(k * CELL + 0.5, 0); ctx.lineTo(k * CELL + 0.5, h); }
      for (var r = 1; r < S.nq; r++) { ctx.moveTo(0, r * CELL + 0.5); ctx.lineTo(w, r * CELL + 0.5); }
      ctx.stroke();
    }
    if (CELL >= 36) {  // values in the cells when they fit
      ctx.font = "11px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (var q = 0; q < S.nq; q++) {
        for (var j = 0; j < S.nk; j++) {
          var v = M[q * S.nk + j];
          ctx.fillStyle = level(v, TOPS[q]) > 150 ? "#fff" : "#1d2330";
          var s = v.toFixed(2);
          ctx.fillText(v < 1 && v >= 0 ? s.slice(1) : s, j * CELL + CELL / 2, q * CELL + CELL / 2);
        }
      }
    }
    drawLegend(sc.hi);
    drawOverlay();
    drawRow();
    drawImage();
    drawOverview();
    var lo = Infinity, hi = -Infinity;
    for (var q2 = 0; q2 < S.nq; q2++) {
      var total = 0;
      for (var t = 0; t < S.nk; t++) total += M[q2 * S.nk + t];
      lo = Math.min(lo, total);
      hi = Math.max(hi, total);
    }
    var valued = state.measure === "value" && !!S.vnorm &&
      (state.head === "mean" || typeof state.head === "number");
    $("status").textContent = S.name + " · " + S.nq + " queries × " + S.nk + " keys · layer " +
      S.layers[state.layer] + " · " + headLabel(S, state.head) +
      (valued ? " · value-weighted ‖α v W_o‖" : "") + " · row sums " +
      (hi - lo < 5e-4 ? lo.toFixed(3) : lo.toFixed(3) + " to " + hi.toFixed(3));
    $("view-note").textContent = state.head === "flow" ? "" : (!S.flow && S.flowNote ? S.flowNote : "");
    document.body.setAttribute("data-view", [state.seq, state.layer, state.head].join("/"));
  }

  function drawLegend(hi) {
    var c = $("legend"), ctx = c.getContext("2d");
    for (var x = 0; x < c.width; x++) {
      var t = Math.round(255 * x / (c.width - 1));
      ctx.fillStyle = "rgb(" + LUT[3 * t] + "," + LUT[3 * t + 1] + "," + LUT[3 * t + 2] + ")";
      ctx.fillRect(x, 0, 1, c.height);
    }
    $("legend-lo").textContent = "0";
    $("legend-hi").textContent = hi === null ? "row max" : fmt(hi);
  }

  function drawOverlay() {
    var c = $("overlay"), ctx = c.getContext("2d");
    ctx.setTransform(OVERLAY, 0, 0, OVERLAY, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    var w = S.nk * CELL;
    ctx.strokeStyle = "#f59e0b";
    ctx.lineWidth = 3;
    state.rows.forEach(function (r) { ctx.strokeRect(1.5, r * CELL + 1.5, w - 3, CELL - 3); });
    if (state.row !== null && state.key !== null) {
      ctx.strokeStyle = "#dc2626";
      ctx.strokeRect(state.key * CELL + 1.5, state.row * CELL + 1.5, CELL - 3, CELL - 3);
    }
    if (state.hover) {
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = 2;
      ctx.strokeRect(state.hover[1] * CELL + 1, state.hover[0] * CELL + 1, CELL - 2, CELL - 2);
    }
    markLabels();
  }

  // ---------- selected row: strongest keys --------------------------------------------------------
  // the selected rows of M combined: their sum, or their mean
  function combinedRow() {
    var row = new Float64Array(S.nk);
    state.rows.forEach(function (r) {
      for (var k = 0; k < S.nk; k++) row[k] += M[r * S.nk + k];
    });
    if (state.combine === "mean" && state.rows.length) {
      for (var k = 0; k < S.nk; k++) row[k] /= state.rows.length;
    }
    return row;
  }

  function drawRow() {
    var title = $("row-title"), list = $("row-bars");
    list.textContent = "";
    if (!state.rows.length) {
      title.textContent = "Click a token (or a cell) to list what it attends to; " +
        "ctrl- or shift-click to add more.";
      drawNeuron();
      return;
    }
    var row = combinedRow();
    title.textContent = "";
    if (state.rows.length === 1) {
      title.appendChild(document.createTextNode("query " + state.rows[0] + " "));
      title.appendChild(el("b", null, S.y[state.rows[0]]));
    } else {
      title.appendChild(document.createTextNode(
        (state.combine === "sum" ? "sum" : "mean") + " of " + state.rows.length + " queries "));
      state.rows.forEach(function (r, n) {
        if (n) title.appendChild(document.createTextNode(", "));
        title.appendChild(el("b", null, S.y[r]));
      });
    }
    title.appendChild(document.createTextNode(" attends most to:"));
    var order = [];
    for (var k = 0; k < S.nk; k++) order.push(k);
    order.sort(function (a, b) { return row[b] - row[a]; });
    var top = row[order[0]] || 1;
    order.slice(0, 12).forEach(function (k) {
      var v = row[k];
      var li = el("li");
      li.appendChild(el("span", "name", S.x[k] + " (" + k + ")"));
      var bar = el("span", "bar"), fillBar = el("span");
      fillBar.style.width = Math.max(0, 100 * v / top).toFixed(1) + "%";
      bar.appendChild(fillBar);
      li.appendChild(bar);
      li.appendChild(el("span", "val", v.toFixed(3)));
      list.appendChild(li);
    });
    drawNeuron();
  }

  // ---------- neuron view: the score of (query i, key j) as a sum over dimensions ---------------
  function drawNeuron() {
    var box = $("neuron"), note = $("neuron-title");
    box.textContent = "";
    if (!S.neuron) {
      note.textContent = S.neuronNote || "No queries/keys were given for this sequence.";
      return;
    }
    var i = state.row, j = state.key;
    if (i === null) {
      note.textContent = "Click a cell (query i, key j) to see q_i · k_j dimension by dimension.";
      return;
    }
    if (j === null) {
      j = 0;  // the strongest key of the row
      for (var k = 1; k < S.nk; k++) if (M[i * S.nk + k] > M[i * S.nk + j]) j = k;
    }
    note.textContent = "";
    note.appendChild(el("b", null, S.y[i]));
    note.appendChild(document.createTextNode(" (query " + i + ") → "));
    note.appendChild(el("b", null, S.x[j]));
    note.appendChild(document.createTextNode(" (key " + j + "), layer " +
      S.layers[state.layer] + ": terms scale·q_i[d]·k_j[d], which add up to the score"));
    var d = S.neuron.d, nh = S.heads.length;
    var heads = typeof state.head === "number" ? [state.head] : S.heads.map(function (_, h) { return h; });
    heads.forEach(function (h) {
      var q = S.neuron.q.map(((state.layer * nh + h) * S.nq + i) * d, d);
      var kv = S.neuron.k.map(((state.layer * nh + h) * S.nk + j) * d, d);
      var terms = [], score = 0;
      for (var e = 0; e < d; e++) { terms.push([e, q[e] * kv[e]]); score += q[e] * kv[e]; }
      terms.sort(function (a, b) { return Math.abs(b[1]) - Math.abs(a[1]); });
      var item = el("div", "nhead");
      item.dataset.head = String(S.heads[h]);
      item.dataset.score = String(score);
      var head = el("div", "nh-title");
      head.appendChild(el("span", null, "head " + S.heads[h]));
      head.appendChild(el("span", "score", "score " + score.toFixed(4) + " = Σ of " + d + " terms"));
      item.appendChild(head);
      var shown = terms.slice(0, heads.length === 1 ? 12 : 4);
      var big = Math.abs(shown[0][1]) || 1;
      shown.forEach(function (t) {
        var line = el("div", "nterm");
        line.appendChild(el("span", "name", "d" + t[0]));
        var bar = el("span", "bar"), fillBar = el("span", t[1] < 0 ? "neg" : null);
        fillBar.style.width = (100 * Math.abs(t[1]) / big).toFixed(1) + "%";
        bar.appendChild(fillBar);
        line.appendChild(bar);
        line.appendChild(el("span", "val", t[1].toFixed(3)));
        item.appendChild(line);
      });
      box.appendChild(item);
    });
  }

  // ---------- image panel -----------------------------------------------------------------------------
  function drawImage() {
    var panel = $("image-panel");
    if (!S.image) { panel.hidden = true; return; }
    panel.hidden = false;
    var im = S.image, gh = im.grid[0], gw = im.grid[1], cls = S.patches.cls;
    var scale = Math.max(1, Math.floor(276 / Math.max(im.w, im.h)));
    var c = $("image-canvas");
    c.width = im.w * scale;
    c.height = im.h * scale;
    var src = document.createElement("canvas");
    src.width = im.w;
    src.height = im.h;
    src.getContext("2d").putImageData(new ImageData(im.rgba.slice(), im.w, im.h), 0, 0);
    var ctx = c.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(src, 0, 0, c.width, c.height);

    // which query's row to show: the selected one, else the class token, else the mean of all rows
    var row = new Float64Array(S.nk), what;
    if (state.rows.length > 1) {
      row = combinedRow();
      what = "the " + state.combine + " of " + state.rows.length + " queries";
    } else if (state.row !== null || cls) {
      var r = state.row !== null ? state.row : 0;
      for (var k = 0; k < S.nk; k++) row[k] = M[r * S.nk + k];
      what = r < cls ? "the class token" : "patch " + (r - cls);
    } else {
      for (var q = 0; q < S.nq; q++) for (var j = 0; j < S.nk; j++) row[j] += M[q * S.nk + j] / S.nq;
      what = "the mean over all queries";
    }
    var top = 0;
    for (var p = cls; p < S.nk; p++) top = Math.max(top, row[p]);
    var cw = c.width / gw, ch = c.height / gh;
    for (var pi = 0; pi < gh * gw; pi++) {
      var t = top > 0 ? row[pi + cls] / top : 0;
      ctx.fillStyle = "rgba(255," + Math.round(200 - 150 * t) + ",0," + (0.75 * t).toFixed(3) + ")";
      ctx.fillRect((pi % gw) * cw, Math.floor(pi / gw) * ch, cw, ch);
    }
    if (state.row !== null && state.row >= cls) {
      var qp = state.row - cls;
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = 3;
      ctx.strokeRect((qp % gw) * cw + 1.5, Math.floor(qp / gw) * ch + 1.5, cw - 3, ch - 3);
    }
    $("image-caption").textContent = "Attention of " + what + " (" + headLabel(S, state.head) +
      ", layer " + S.layers[state.layer] + "). Click a patch to choose the query.";
  }

  // ---------- overview: every layer × head as a thumbnail ----------------------------------------------
  // the thumbnails are drawn once per sequence and colour scale; a new layer/head only moves
  // the "current" outline
  var overviewKey = null, overviewTimer = null;

  function drawOverview() {
    var box = $("overview");
    var key = state.seq + "/" + state.scale + "/" + state.measure;
    if (key === overviewKey) {
      box.querySelectorAll("canvas").forEach(function (cv) {
        cv.classList.toggle("current", cv.dataset.view === state.layer + "/" + state.head);
      });
      return;
    }
    overviewKey = key;
    box.textContent = "";
    if (overviewTimer) clearTimeout(overviewTimer);
    var cols = [["mean", "mean"]];  // [head choice, column label]
    S.heads.forEach(function (h, i) { cols.push([i, "h" + h]); });
    if (S.rollout) cols.push(["rollout", "rollout"]);
    box.style.gridTemplateColumns = "34px repeat(" + cols.length + ", minmax(24px, 64px))";
    box.appendChild(el("span"));
    cols.forEach(function (c) { box.appendChild(el("span", "lab", c[1])); });
    var s = S;
    function layerRow(li) {
      if (li >= s.layers.length || s !== S) return;
      var l = s.layers[li];
      box.appendChild(el("span", "lab", "L" + l));
      cols.forEach(function (c) {
        var m = mapOf(S, li, c[0], state.measure);
        var cv = document.createElement("canvas");
        paint(cv, m, S.nq, S.nk, rowTops(m, S.nq, S.nk, state.scale).rows);
        cv.title = "layer " + l + ", " + headLabel(S, c[0]);
        cv.dataset.view = li + "/" + c[0];
        cv.style.aspectRatio = S.nk + " / " + S.nq;
        if (li === state.layer && c[0] === state.head) cv.className = "current";
        cv.addEventListener("click", function () {
          state.layer = li;
          state.head = c[0];
          syncSelects();
          draw();
        });
        box.appendChild(cv);
      });
      if (li + 1 === s.layers.length) document.body.setAttribute("data-overview", "1");
      else if (small) layerRow(li + 1);
      // a large model: one layer per task, so the page opens (and answers clicks) first
      else overviewTimer = setTimeout(function () { layerRow(li + 1); }, 0);
    }
    var small = S.nq * S.nk * S.layers.length * cols.length < 4e6;
    document.body.removeAttribute("data-overview");
    layerRow(0);
  }

  // ---------- events ----------------------------------------------------------------------------------------
  var tip = $("tooltip");

  function cellAt(ev) {
    var rect = $("overlay").getBoundingClientRect();
    var k = Math.floor((ev.clientX - rect.left) / CELL), r = Math.floor((ev.clientY - rect.top) / CELL);
    if (k < 0 || r < 0 || k >= S.nk || r >= S.nq) return null;
    return [r, k];
  }

  // a plain click selects one row (again: none); ctrl/cmd/shift-click adds or removes a row
  function selectRow(r, ev, key) {
    var many = ev && (ev.ctrlKey || ev.metaKey || ev.shiftKey);
    var at = state.rows.indexOf(r);
    if (many) {
      if (at >= 0) state.rows.splice(at, 1); else state.rows.push(r);
    } else {
      state.rows = state.rows.length === 1 && at === 0 && key === undefined ? [] : [r];
    }
    state.row = state.rows.length ? (state.rows.indexOf(r) >= 0 ? r : state.rows[state.rows.length - 1]) : null;
    state.key = key === undefined ? null : key;
    drawOverlay();
    drawRow();
    drawImage();
  }

  $("overlay").addEventListener("mousemove", function (ev) {
    var at = cellAt(ev);
    state.hover = at;
    drawOverlay();
    if (!at) { tip.hidden = true; return; }
    var v = M[at[0] * S.nk + at[1]];
    tip.textContent = "";
    tip.appendChild(el("span", "t", S.y[at[0]]));
    tip.appendChild(document.createTextNode(" → "));
    tip.appendChild(el("span", "t", S.x[at[1]]));
    tip.appendChild(el("br"));
    tip.appendChild(document.createTextNode("weight "));
    tip.appendChild(el("b", "value", fmt(v)));
    tip.appendChild(document.createTextNode("  (query " + at[0] + ", key " + at[1] + ")"));
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var bw = tip.offsetWidth, bh = tip.offsetHeight;
    if (x + bw > window.innerWidth - 4) x = ev.clientX - bw - 10;
    if (y + bh > window.innerHeight - 4) y = ev.clientY - bh - 10;
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  });
  $("overlay").addEventListener("mouseleave", function () {
    state.hover = null;
    tip.hidden = true;
    drawOverlay();
  });
  $("overlay").addEventListener("click", function (ev) {
    var at = cellAt(ev);
    if (at) selectRow(at[0], ev, at[1]);
  });
  $("ylabels").addEventListener("click", function (ev) {
    var t = ev.target.closest(".tok");
    if (t) selectRow(Number(t.dataset.k), ev);
  });
  $("xlabels").addEventListener("click", function (ev) {
    var t = ev.target.closest(".tok");
    if (t && Number(t.dataset.k) < S.nq) selectRow(Number(t.dataset.k), ev);
  });
  $("image-canvas").addEventListener("click", function (ev) {
    var c = $("image-canvas"), rect = c.getBoundingClientRect(), g = S.image.grid;
    var col = Math.floor((ev.clientX - rect.left) / rect.width * g[1]);
    var row = Math.floor((ev.clientY - rect.top) / rect.height * g[0]);
    if (col >= 0 && row >= 0 && col < g[1] && row < g[0]) selectRow(S.patches.cls + row * g[1] + col, ev);
  });
  $("seq-select").addEventListener("change", function (ev) {
    state.seq = Number(ev.target.value);
    document.body.removeAttribute("data-ready");
    sequence(state.seq).then(function (s) {
      setupSequence(s);
      draw();
      document.body.setAttribute("data-ready", "1");
    }).catch(fail);
  });
  $("layer-select").addEventListener("change", function (ev) {
    state.layer = Number(ev.target.value);
    draw();
  });
  $("head-select").addEventListener("change", function (ev) {
    var v = ev.target.value;
    state.head = v === "mean" || v === "rollout" || v === "flow" ? v : Number(v);
    draw();
  });
  $("measure-select").addEventListener("change", function (ev) {
    state.measure = ev.target.value;
    draw();
  });
  $("combine-select").addEventListener("change", function (ev) {
    state.combine = ev.target.value;
    drawRow();
    drawImage();
  });
  $("scale-select").addEventListener("change", function (ev) {
    state.scale = ev.target.value;
    draw();
  });

  // ---------- start -------------------------------------------------------------------------------------------
  function fail(err) {
    showError("Could not draw the report: " + err);
    throw err;
  }

  try {
    fill($("seq-select"), DATA.sequences.map(function (s, i) { return [i, s.name]; }));
    sequence(0).then(function (s) {
      setupSequence(s);
      draw();
      document.body.setAttribute("data-ready", "1");
    }).catch(fail);
  } catch (err) {
    fail(err);
  }
})();
