  // Part 1 of the viewer (report.js holds the parts in one function): small helpers,
  // decoding the data block, colours.
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
