// The attention report's viewer. Reads the JSON block #report-data (written by
// selfattention.viz.report) and draws heatmaps on canvases. User strings (names, tokens) are only
// ever put on the page with textContent or as attribute values, never parsed as HTML.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  /* PARTS */
})();
