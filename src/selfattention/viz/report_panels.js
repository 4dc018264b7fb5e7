  // Part 3 of the viewer: the panels beside the heatmap (strongest keys, neuron view, image)
  // and the overview of every layer × head.
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
