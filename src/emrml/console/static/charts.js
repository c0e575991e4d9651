// The console's charts, drawn with D3 from the page's JSON data (the page's JSON twin).
// Every chart has a text equivalent on its page (tables, the threshold form, or a visually hidden table of
// its figures drawn beside it: textTable), so to screen readers it is one image named by its label, except
// the threshold line, which is a keyboard-operable slider.
"use strict";
(function () {
  var WIDTH = 640, NARROWEST = 280, HEIGHT = 260, M = { top: 16, right: 20, bottom: 44, left: 56 };

  // A chart is drawn at its box's width (at most WIDTH): drawn wider and shrunk to fit a phone's screen,
  // its labels would shrink with it to a few pixels.
  function widthIn(container) {
    return Math.max(NARROWEST, Math.min(WIDTH, Math.floor(container.clientWidth || WIDTH)));
  }

  // Tick marks for an axis ``length`` pixels long: their numbers must not run into each other.
  function ticksFor(length, most) { return Math.max(2, Math.min(most, Math.floor(length / 60))); }

  // role "img" for pictures; "group" for a chart holding focusable parts (a picture cannot hold controls).
  function svgIn(container, width, height, label, role) {
    return d3.select(container).append("svg")
      .attr("viewBox", "0 0 " + width + " " + height)
      .attr("width", width).attr("height", height)
      .attr("role", role || "img").attr("aria-label", label);
  }

  function fmt(n) { return Number(n).toLocaleString("en-US", { maximumFractionDigits: 4 }); }

  // Names and values from the data (attribute names, category values, words, features, class labels) as
  // the pages' filter ``visible`` shows them (console.js, which runs before the charts are drawn).
  function shown(text) { return window.emrmlVisible ? window.emrmlVisible(String(text)) : String(text); }

  // ``label`` keeping ``kept`` of its characters, cut in the middle.
  function middleCut(label, kept) {
    var head = Math.ceil(kept / 2);
    return label.slice(0, head) + "…" + label.slice(label.length - (kept - head));
  }

  // Text labels (their data the whole label, or ``labelOf`` it) cut in their middle to fit ``room`` pixels
  // (a number, or a function of the datum and index), as drawn in their font: features differ at their end
  // as much as at their start ("quantile_bin(duration,50)=bin_4" and "...=bin_49"). A label that fits is
  // whole, however long; each keeps the whole one in its title (and its data-label).
  function fitted(selection, room, labelOf) {
    selection.each(function (d, i) {
      var node = this, whole = String(labelOf ? labelOf(d) : d);
      var most = typeof room === "function" ? room(d, i) : room;
      node.textContent = whole;
      if (node.getComputedTextLength() > most) {
        var lo = 0, hi = whole.length - 1;
        while (lo < hi) {
          var mid = Math.ceil((lo + hi) / 2);
          node.textContent = middleCut(whole, mid);
          if (node.getComputedTextLength() <= most) lo = mid; else hi = mid - 1;
        }
        node.textContent = middleCut(whole, lo);
      }
      d3.select(node).attr("data-label", whole).append("title").text(whole);
    });
  }

  // A chart's figures as a table for screen readers (the picture is one image to them): ``rows`` of a
  // row heading and values, under ``headings``.
  function textTable(container, caption, headings, rows) {
    // Hidden in a div: a table keeps its columns' width whatever its own, and would widen the page.
    var table = d3.select(container).append("div").attr("class", "visually-hidden").append("table");
    table.append("caption").text(caption);
    table.append("thead").append("tr").selectAll("th").data(headings).join("th").attr("scope", "col").text(function (d) { return d; });
    var body = table.append("tbody");
    rows.forEach(function (row) {
      var line = body.append("tr");
      line.append("th").attr("scope", "row").text(row[0]);
      row.slice(1).forEach(function (value) { line.append("td").text(value); });
    });
  }

  // Horizontal bars: items [{label, value}], values may be negative (feature weights); ``headings`` (of the
  // labels and the values) for its text table, none where the page has one.
  function bars(container, items, label, headings) {
    if (!items.length) return;
    items = items.map(function (d) { return { label: shown(d.label), value: d.value }; });
    var width = widthIn(container), rowHeight = 20, height = items.length * rowHeight + 30;
    var left = Math.min(190, Math.round(width * 0.4));
    var svg = svgIn(container, width, height, label);
    var lo = Math.min(0, d3.min(items, function (d) { return d.value; }));
    var hi = Math.max(0, d3.max(items, function (d) { return d.value; }));
    var x = d3.scaleLinear().domain([lo, hi || 1]).nice().range([left, width - M.right]);
    var y = d3.scaleBand().domain(items.map(function (d, i) { return i; })).range([4, height - 26]).padding(0.15);
    svg.append("g").selectAll("rect").data(items).join("rect")
      .attr("x", function (d) { return x(Math.min(0, d.value)); })
      .attr("y", function (d, i) { return y(i); })
      .attr("width", function (d) { return Math.abs(x(d.value) - x(0)); })
      .attr("height", y.bandwidth())
      .attr("fill", function (d) { return d.value < 0 ? "#b35900" : "#0b5cad"; })
      .append("title").text(function (d) { return d.label + ": " + fmt(d.value); });
    svg.append("g").attr("class", "bar-labels").selectAll("text").data(items).join("text")
      .attr("x", left - 6).attr("y", function (d, i) { return y(i) + y.bandwidth() / 2; })
      .attr("dy", "0.35em").attr("text-anchor", "end").attr("font-size", 11)
      .call(fitted, left - 8, function (d) { return d.label; });
    svg.append("g").attr("class", "axis").attr("transform", "translate(0," + (height - 24) + ")")
      .call(d3.axisBottom(x).ticks(ticksFor(width - left, 6)));
    if (headings) textTable(container, label, headings, items.map(function (d) { return [d.label, fmt(d.value)]; }));
  }

  // A histogram of counts over bins given by their edges.
  function histogram(container, edges, counts, label, xLabel) {
    var width = widthIn(container), svg = svgIn(container, width, HEIGHT, label);
    var x = d3.scaleLinear().domain([edges[0], edges[edges.length - 1]]).range([M.left, width - M.right]);
    var y = d3.scaleLinear().domain([0, d3.max(counts) || 1]).nice().range([HEIGHT - M.bottom, M.top]);
    svg.append("g").selectAll("rect").data(counts).join("rect")
      .attr("x", function (d, i) { return x(edges[i]) + 0.5; })
      .attr("width", function (d, i) { return Math.max(0, x(edges[i + 1]) - x(edges[i]) - 1); })
      .attr("y", function (d) { return y(d); })
      .attr("height", function (d) { return y(0) - y(d); })
      .attr("fill", "#0b5cad")
      .append("title").text(function (d, i) { return fmt(edges[i]) + " to " + fmt(edges[i + 1]) + ": " + fmt(d); });
    svg.append("g").attr("class", "axis").attr("transform", "translate(0," + (HEIGHT - M.bottom) + ")").call(d3.axisBottom(x).ticks(ticksFor(width - M.left, 8)));
    svg.append("g").attr("class", "axis").attr("transform", "translate(" + M.left + ",0)").call(d3.axisLeft(y).ticks(5));
    if (xLabel) svg.append("text").attr("x", width / 2).attr("y", HEIGHT - 8).attr("text-anchor", "middle").attr("font-size", 12).datum(xLabel).call(fitted, width - 16);
    textTable(container, label, [xLabel || "Range", "Records"], counts.map(function (d, i) { return [fmt(edges[i]) + " to " + fmt(edges[i + 1]), fmt(d)]; }));
  }

  function figure(parent, title) {
    var node = d3.select(parent).append("figure");
    node.append("figcaption").text(title);
    return node.node();
  }

  // ------------------------------------------------------------------------------------ datasource

  // A text's prominent words come most correlated with the target first where there is a target (else
  // most frequent first), each with its occurrences (a record may hold a word more than once): the label
  // says which order, lest a shorter bar above a longer one look misplaced.
  function wordsLabel(attribute) {
    var correlated = attribute.prominentWords.some(function (v) { return typeof v.targetCorrelation === "number"; });
    return "Prominent words of " + shown(attribute.name) + (correlated ? ", most correlated with the target first" : ", most frequent first");
  }

  function datasourceCharts(data) {
    var statistics = (data.GetDataSourceStatistics || {}).Statistics;
    if (!statistics) return;
    var attributes = statistics.attributes || [];
    var target = statistics.target;
    var targetNode = document.getElementById("target-chart");
    if (target && targetNode) {
      var dist = target.distribution || {};
      var targetName = shown(target.name);
      var heading = d3.select(targetNode).append("h3").text("Target: " + targetName + " (" + target.type + ")");
      if (dist.counts) bars(targetNode, Object.keys(dist.counts).map(function (k) { return { label: k, value: dist.counts[k] }; }), "Target distribution", ["Value", "Records"]);
      else if (dist.histogram) histogram(targetNode, dist.histogram.edges, dist.histogram.counts, "Target distribution", targetName);
      else heading.remove();
    }
    var ranked = attributes.filter(function (a) { return typeof a.targetCorrelation === "number"; })
      .sort(function (a, b) { return b.targetCorrelation - a.targetCorrelation; });
    var corr = document.getElementById("correlation-chart");
    if (corr) bars(corr, ranked.map(function (a) { return { label: a.name, value: a.targetCorrelation }; }), "Attributes ranked by correlation with the target", ["Attribute", "Correlation"]);
    var list = document.getElementById("attribute-charts");
    if (!list) return;
    attributes.forEach(function (a) {
      if (a.role === "target") return;
      var name = shown(a.name), node = figure(list, name + " (" + a.type + ")");
      if (a.type === "NUMERIC" && a.histogram) histogram(node, a.histogram.edges, a.histogram.counts, "Histogram of " + name, name);
      else if (a.type === "CATEGORICAL" && a.topValues) bars(node, a.topValues.map(function (v) { return { label: v.value, value: v.count }; }), "Top categories of " + name, ["Value", "Records"]);
      else if (a.type === "TEXT" && a.prominentWords) bars(node, a.prominentWords.slice(0, 15).map(function (v) { return { label: v.word, value: v.count }; }), wordsLabel(a), ["Word", "Occurrences"]);
      else if (a.counts) bars(node, Object.keys(a.counts).map(function (k) { return { label: k, value: a.counts[k] }; }), "Values of " + name, ["Value", "Records"]);
    });
  }

  // ------------------------------------------------------------------------------------ model

  function modelCharts(data) {
    var insights = data.GetMLModelInsights || {};
    var report = insights.TrainingReport;
    var lossNode = document.getElementById("loss-chart");
    if (report && lossNode && report.losses && report.losses.length) {
      var losses = report.losses;
      var width = widthIn(lossNode), svg = svgIn(lossNode, width, HEIGHT, "Training loss by pass");
      var x = d3.scaleLinear().domain([1, Math.max(2, losses.length)]).range([M.left, width - M.right]);
      var y = d3.scaleLinear().domain([0, d3.max(losses)]).nice().range([HEIGHT - M.bottom, M.top]);
      svg.append("path").datum(losses).attr("fill", "none").attr("stroke", "#0b5cad").attr("stroke-width", 2)
        .attr("d", d3.line().x(function (d, i) { return x(i + 1); }).y(function (d) { return y(d); }));
      svg.append("g").selectAll("circle").data(losses).join("circle").attr("r", 3).attr("fill", "#0b5cad")
        .attr("cx", function (d, i) { return x(i + 1); }).attr("cy", function (d) { return y(d); })
        .append("title").text(function (d, i) { return "pass " + (i + 1) + ": " + fmt(d); });
      svg.append("g").attr("class", "axis").attr("transform", "translate(0," + (HEIGHT - M.bottom) + ")").call(d3.axisBottom(x).ticks(ticksFor(width - M.left, Math.min(losses.length, 10))).tickFormat(d3.format("d")));
      svg.append("g").attr("class", "axis").attr("transform", "translate(" + M.left + ",0)").call(d3.axisLeft(y).ticks(5));
      svg.append("text").attr("x", width / 2).attr("y", HEIGHT - 8).attr("text-anchor", "middle").attr("font-size", 12).text("pass");
      textTable(lossNode, "Training loss by pass", ["Pass", "Loss"], losses.map(function (d, i) { return [String(i + 1), fmt(d)]; }));
    }
    var featuresNode = document.getElementById("features-chart");
    if (featuresNode && insights.TopFeatures) {
      bars(featuresNode, insights.TopFeatures.slice(0, 20).map(function (f) { return { label: f.feature, value: f.weight }; }), "Largest feature weights", ["Feature", "Weight"]);
    }
  }

  // ------------------------------------------------------------------------------------ evaluation

  // The same arithmetic as emrml/console/thresholds.py and `emrml evaluation show --score-threshold`.
  function atThreshold(metrics, threshold) {
    var table = metrics.thresholdTable, current = 0;
    for (var i = 1; i < table.length; i++) {
      if (Math.abs(table[i].threshold - threshold) < Math.abs(table[current].threshold - threshold)) current = i;
    }
    var row = table[current];
    var positives = d3.sum(metrics.histograms.positive), negatives = d3.sum(metrics.histograms.negative);
    var whole = Number.isInteger(positives) && Number.isInteger(negatives);
    var tp = row.recall * positives, fp = row.falsePositiveRate * negatives;
    // Python's round() rounds halves to even; these products are whole numbers up to float error.
    function count(v) { return whole ? Math.round(v) : v; }
    return {
      threshold: row.threshold, truePositives: count(tp), falseNegatives: count(positives - tp),
      falsePositives: count(fp), trueNegatives: count(negatives - fp), accuracy: row.accuracy,
      precision: row.precision, recall: row.recall, falsePositiveRate: row.falsePositiveRate, f1: row.f1,
      predictedPositiveRate: row.predictedPositiveRate
    };
  }
  window.emrmlAtThreshold = atThreshold;

  function showAt(at) {
    var text = {
      threshold: at.threshold.toFixed(2),
      truePositives: fmt(at.truePositives), falseNegatives: fmt(at.falseNegatives),
      falsePositives: fmt(at.falsePositives), trueNegatives: fmt(at.trueNegatives),
      accuracy: at.accuracy.toFixed(3), precision: at.precision.toFixed(3), recall: at.recall.toFixed(3),
      falsePositiveRate: at.falsePositiveRate.toFixed(3), f1: at.f1.toFixed(3),
      predictedPositiveRate: (100 * at.predictedPositiveRate).toFixed(1) + "%"
    };
    Object.keys(text).forEach(function (key) {
      document.querySelectorAll('[data-at="' + key + '"]').forEach(function (node) { node.textContent = text[key]; });
    });
  }

  // The threshold form's listeners, added once however often the explorer is drawn: they act on the
  // explorer drawn last (``explorer``, its ``set`` and ``typed``), whose threshold a redrawing keeps.
  var explorer = null, listening = false;

  function listenToThresholdForm() {
    if (listening) return;
    listening = true;
    var input = document.getElementById("threshold"), status = document.getElementById("threshold-status");
    if (input) input.addEventListener("input", function () {
      if (status) status.textContent = "";
      if (explorer && explorer.typed() !== null) explorer.set(explorer.typed());
    });
    // A form that cannot save (a share link, a user without UpdateMLModel) shows the counts in place on
    // Enter, focus staying in the box, and says so; a value out of range goes to the server, which says why.
    var form = document.getElementById("threshold-form");
    if (form && input && form.getAttribute("data-saves") === "no") form.addEventListener("submit", function (event) {
      if (!explorer || explorer.typed() === null) return;
      event.preventDefault();
      explorer.set(explorer.typed());
      var saving = document.getElementById("save-threshold");
      if (status) status.textContent = "Counts shown at " + explorer.value().toFixed(2) + (saving ? "; not saved." : ".");
    });
  }

  function scoreExplorer(node, metrics, start) {
    var h = metrics.histograms, edges = h.edges;
    var width = widthIn(node), height = 300;
    var svg = svgIn(node, width, height, "Score histograms of actual 1s and actual 0s with the threshold", "group");
    var x = d3.scaleLinear().domain([0, 1]).range([M.left, width - M.right]);
    var top = d3.max(h.positive.concat(h.negative)) || 1;
    var y = d3.scaleSqrt().domain([0, top]).nice().range([height - M.bottom, M.top + 14]);
    [["negative", "#b35900", "Actual 0s"], ["positive", "#0b5cad", "Actual 1s"]].forEach(function (series, s) {
      svg.append("g").attr("fill", series[1]).attr("fill-opacity", 0.65).selectAll("rect").data(h[series[0]]).join("rect")
        .attr("x", function (d, i) { return x(edges[i]) + 0.5; })
        .attr("width", function (d, i) { return Math.max(0.5, x(edges[i + 1]) - x(edges[i]) - 1); })
        .attr("y", function (d) { return y(d); }).attr("height", function (d) { return y(0) - y(d); })
        .append("title").text(function (d, i) { return series[2] + " scoring " + edges[i].toFixed(2) + " to " + edges[i + 1].toFixed(2) + ": " + fmt(d); });
      var legend = svg.append("g").attr("class", "legend").attr("transform", "translate(" + (width - 200 + s * 95) + "," + 4 + ")");
      legend.append("rect").attr("width", 10).attr("height", 10).attr("fill", series[1]);
      legend.append("text").attr("x", 14).attr("y", 9).text(series[2]);
    });
    svg.append("g").attr("class", "axis").attr("transform", "translate(0," + (height - M.bottom) + ")").call(d3.axisBottom(x).ticks(ticksFor(width - M.left, 10)));
    svg.append("g").attr("class", "axis").attr("transform", "translate(" + M.left + ",0)").call(d3.axisLeft(y).ticks(5));
    svg.append("text").attr("x", width / 2).attr("y", height - 8).attr("text-anchor", "middle").attr("font-size", 12)
      .datum("score (records per bin, square-root scale)").call(fitted, width - 16);

    var input = document.getElementById("threshold");
    var handle = svg.append("g").attr("class", "threshold-handle").attr("id", "threshold-slider")
      .attr("tabindex", 0).attr("role", "slider").attr("aria-label", "Score threshold")
      .attr("aria-valuemin", 0).attr("aria-valuemax", 1);
    handle.append("rect").attr("x", -8).attr("width", 16).attr("y", M.top).attr("height", height - M.bottom - M.top).attr("fill", "transparent");
    handle.append("line").attr("class", "threshold-line").attr("y1", M.top).attr("y2", height - M.bottom);
    handle.append("circle").attr("class", "threshold-knob").attr("r", 7).attr("cy", M.top + 2);
    var value = start;

    // keepInput: the first drawing leaves a refused value in the box, beside the error that quotes it.
    function set(t, keepInput) {
      t = Math.min(1, Math.max(0, Math.round(t * 100) / 100));
      value = t;
      handle.attr("transform", "translate(" + x(t) + ",0)").attr("aria-valuenow", t).attr("aria-valuetext", t.toFixed(2));
      if (input && !keepInput && document.activeElement !== input) input.value = t.toFixed(2);
      showAt(atThreshold(metrics, t));
    }
    handle.call(d3.drag().on("drag", function (event) { set(x.invert(event.x)); }));
    svg.on("click", function (event) { set(x.invert(d3.pointer(event)[0])); });
    handle.on("keydown", function (event) {
      var steps = { ArrowRight: 0.01, ArrowUp: 0.01, ArrowLeft: -0.01, ArrowDown: -0.01, PageUp: 0.1, PageDown: -0.1 };
      if (event.key in steps) set(value + steps[event.key]);
      else if (event.key === "Home") set(0);
      else if (event.key === "End") set(1);
      else return;
      event.preventDefault();
    });
    function typed() {
      var t = Number(input.value);
      return input.value.trim() !== "" && isFinite(t) && t >= 0 && t <= 1 ? t : null;
    }
    // Redrawn, the explorer keeps the threshold shown and leaves the box as the user left it.
    var redrawn = explorer !== null;
    if (redrawn) start = explorer.value();
    explorer = { set: set, typed: typed, value: function () { return value; } };
    listenToThresholdForm();
    set(start, redrawn || (input && input.getAttribute("aria-invalid") === "true"));
  }

  // The width of the longest of ``labels`` drawn at ``size`` pixels in ``container``'s font.
  function longest(container, labels, size) {
    var probe = d3.select(container).append("svg").attr("width", 0).attr("height", 0).attr("aria-hidden", "true");
    var most = 0;
    labels.forEach(function (label) {
      most = Math.max(most, probe.append("text").attr("font-size", size).text(String(label)).node().getComputedTextLength());
    });
    probe.remove();
    return Math.ceil(most);
  }

  function heatMap(node, view) {
    // The classes' names take what the cells (20 to 48 pixels) leave of the box's width, up to 130 pixels,
    // and no more than the longest name needs: short names ("1", "cat") leave the cells the room.
    var classes = view.classes.map(shown), n = classes.length, room = widthIn(node);
    var left = Math.min(longest(node, classes, 11) + 10, Math.max(60, Math.min(130, room - 20 - n * 28)));
    var cell = Math.max(20, Math.min(48, Math.floor((room - left - 20) / n)));
    // Room on the right, where there is some, for the slanted names of the last columns.
    var right = Math.max(20, Math.min(90, room - left - n * cell));
    var top = 90, width = left + n * cell + right, height = top + n * cell + 20;
    var svg = svgIn(node, width, height, "Confusion matrix heat map", "group");
    var color = d3.scaleSequential(d3.interpolateBlues).domain([0, 1]);
    var cells = [];
    view.counts.forEach(function (row, r) {
      var total = d3.sum(row) || 1;
      row.forEach(function (count, c) { cells.push({ r: r, c: c, count: count, share: count / total }); });
    });
    // The cell last visited is kept on the box, which a redrawing (a resize) keeps: the matrix drawn again
    // is entered at that cell, and the keyboard's focus is given back to it (see the resize listener).
    var visited = (node.getAttribute("data-visited-cell") || "0,0").split(",").map(Number);
    if (!(visited[0] < n && visited[1] < n)) visited = [0, 0];
    var g = svg.append("g").selectAll("g").data(cells).join("g")
      .attr("transform", function (d) { return "translate(" + (left + d.c * cell) + "," + (top + d.r * cell) + ")"; })
      .attr("data-cell", function (d) { return d.r + "," + d.c; })
      .attr("tabindex", function (d) { return d.r === visited[0] && d.c === visited[1] ? 0 : -1; }).attr("role", "img").attr("class", "cell")
      .attr("aria-label", function (d) { return "true " + classes[d.r] + ", predicted " + classes[d.c] + ": " + fmt(d.count) + " records"; });
    // One tab stop for the whole matrix (a hundred cells would each be one otherwise): the arrow keys move
    // between cells, Home and End along a row; Tab leaves the matrix from the cell last visited (by the
    // keyboard or a click).
    var nodes = g.nodes();
    g.on("focus", function (event, d) {
      nodes.forEach(function (other) { other.setAttribute("tabindex", other === event.currentTarget ? 0 : -1); });
      node.setAttribute("data-visited-cell", d.r + "," + d.c);
    });
    g.on("keydown", function (event, d) {
      var moves = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] };
      var r = d.r, c = d.c;
      if (event.key in moves) { r += moves[event.key][0]; c += moves[event.key][1]; }
      else if (event.key === "Home") c = 0;
      else if (event.key === "End") c = n - 1;
      else return;
      event.preventDefault();
      nodes[Math.min(n - 1, Math.max(0, r)) * n + Math.min(n - 1, Math.max(0, c))].focus();
    });
    g.append("rect").attr("width", cell - 1).attr("height", cell - 1).attr("fill", function (d) { return color(d.share); })
      .append("title").text(function (d) { return "true " + classes[d.r] + ", predicted " + classes[d.c] + ": " + fmt(d.count); });
    // A cell shows its count where it fits (else its title, label and the page's table say it).
    g.append("text").attr("class", "cell-label").attr("x", cell / 2).attr("y", cell / 2).attr("dy", "0.35em")
      .attr("text-anchor", "middle").attr("fill", function (d) { return d.share > 0.5 ? "#fff" : "#000"; })
      .text(function (d) { return fmt(d.count); })
      .each(function () { if (this.getComputedTextLength() > cell - 4) this.remove(); });
    svg.append("g").selectAll("text").data(classes).join("text").attr("font-size", 11)
      .attr("x", left - 6).attr("y", function (d, i) { return top + i * cell + cell / 2; }).attr("dy", "0.35em").attr("text-anchor", "end")
      .call(fitted, left - 8);
    svg.append("g").selectAll("text").data(classes).join("text").attr("font-size", 11)
      .attr("transform", function (d, i) { return "translate(" + (left + i * cell + cell / 2) + "," + (top - 6) + ") rotate(-45)"; })
      // Slanted up to the right: each within the chart's top and its right edge.
      .call(fitted, function (d, i) { return Math.min(top - 10, width - (left + i * cell + cell / 2)) * Math.SQRT2; });
  }

  function evaluationCharts(data) {
    var insights = data.GetEvaluationInsights || {};
    var metrics = (insights.Insights || {}).metrics || {};
    var scoreNode = document.getElementById("score-chart");
    if (scoreNode && metrics.thresholdTable && data.AtThreshold) scoreExplorer(scoreNode, metrics, data.AtThreshold.threshold);
    var matrixNode = document.getElementById("confusion-chart");
    if (matrixNode && metrics.consoleView) heatMap(matrixNode, metrics.consoleView);
    var residualNode = document.getElementById("residual-chart");
    if (residualNode && metrics.residualHistogram) {
      histogram(residualNode, metrics.residualHistogram.edges, metrics.residualHistogram.counts, "Residual histogram", "actual − predicted");
    }
  }

  // Side by side: each evaluation's main chart, drawn small.
  function compareCharts(data) {
    (data.Evaluations || []).forEach(function (side, index) {
      var node = document.querySelector('.compare-chart[data-side="' + index + '"]');
      var metrics = ((side.GetEvaluationInsights || {}).Insights || {}).metrics || {};
      if (!node) return;
      if (metrics.histograms) {
        var h = metrics.histograms, sums = h.positive.map(function (p, i) { return p + h.negative[i]; });
        histogram(node, h.edges, sums, "Score histogram", "score");
      } else if (metrics.consoleView) heatMap(node, metrics.consoleView);
      else if (metrics.residualHistogram) histogram(node, metrics.residualHistogram.edges, metrics.residualHistogram.counts, "Residual histogram", "actual − predicted");
    });
  }

  function predictionCharts(data) {
    var node = document.getElementById("scores-chart");
    var scores = data.Prediction && data.Prediction.predictedScores;
    if (node && scores) bars(node, Object.keys(scores).map(function (k) { return { label: k, value: scores[k] }; }), "Predicted scores");
  }

  function drawAll(data) {
    datasourceCharts(data);
    modelCharts(data);
    evaluationCharts(data);
    predictionCharts(data);
    compareCharts(data);
  }

  // The charts' boxes (empty in the page: all they hold is drawn) and the widths they were drawn at.
  function chartBoxes() { return Array.prototype.slice.call(document.querySelectorAll("main .chart, main .charts")); }
  function boxWidths() { return chartBoxes().map(function (box) { return box.clientWidth; }).join(" "); }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.d3) return;
    var data = window.emrmlPageData ? window.emrmlPageData() : {};
    var started = performance.now();
    drawAll(data);
    document.documentElement.setAttribute("data-charts-ms", String(Math.round(performance.now() - started)));
    document.documentElement.setAttribute("data-charts", "drawn");
    // A chart is drawn for its box's width: when a resize (a phone turned) changes it, the charts are drawn
    // again at the new width rather than shrunk or left narrow; once the resizing has settled, and not
    // when only the height changed.
    var drawnAt = boxWidths(), pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var now = boxWidths();
        if (now === drawnAt) return;
        drawnAt = now;
        // The part of a chart that had the keyboard's focus keeps it across the redrawing: the threshold
        // slider (drawn anew by its id), a heat map's cell (by its row and column, in the same box).
        var active = document.activeElement, box = active && active.closest ? active.closest(".chart, .charts") : null;
        var again = !box ? "" : active.id ? "#" + CSS.escape(active.id)
          : active.hasAttribute("data-cell") ? '[data-cell="' + active.getAttribute("data-cell") + '"]' : "";
        chartBoxes().forEach(function (each) { each.replaceChildren(); });
        drawAll(data);
        drawnAt = boxWidths();
        var refocused = again ? box.querySelector(again) : null;
        if (refocused) refocused.focus();
        var redraws = Number(document.documentElement.getAttribute("data-charts-redrawn") || 0);
        document.documentElement.setAttribute("data-charts-redrawn", String(redraws + 1));
      }, 150);
    });
  });
})();
