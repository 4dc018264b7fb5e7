  // Part 2 of the viewer: state, selectors, labels, the heatmap.
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
    // one label cell: the token as text, or its patch picture (``pic``)
    function tokenCell(t, k, kind, width, height, pic) {
      var d = el("div", "tok");
      if (width) d.style.width = width + "px";
      d.style.height = height + "px";
      d.style.lineHeight = CELL + "px";
      d.title = kind + " " + k + ": " + t;
      d.dataset.k = String(k);
      if (pic) { d.classList.add("pic"); d.appendChild(pic); } else d.textContent = t;
      return d;
    }
    S.x.forEach(function (t, k) {
      xl.appendChild(tokenCell(t, k, "key", CELL, xHeight, label(S, k, CELL - 2)));
    });
    S.y.forEach(function (t, k) {
      var pic = S.nq === S.nk ? label(S, k, CELL - 2) : null;
      yl.appendChild(tokenCell(t, k, "query", 0, CELL, pic));
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
