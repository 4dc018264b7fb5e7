  // Part 4 of the viewer: clicks, keys, hover, and the start.
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
