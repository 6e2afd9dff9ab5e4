/* Turn what the gateway answers (Prometheus-format errors) into "what happened, what to do". Pure. */
"use strict";

(function (global) {
  // Prometheus's own limits, and the gateway's (query length, nesting, operators, range).
  const EXPENSIVE = /too many samples|maximum resolution|exceed|too expensive|too many series|limit|points per timeseries|longer than|nests deeper|more than \d+ operators/i;
  const TIMEOUT = /timed? ?out|deadline/i;

  function retryText(seconds) {
    if (!seconds || !isFinite(seconds)) return "Wait a little";
    return "Wait " + Math.ceil(seconds) + " s";
  }

  /**
   * status: HTTP status (0 when the gateway could not be reached);
   * body: the parsed JSON error ({status:"error", errorType, error}) or null;
   * retryAfter: the Retry-After header in seconds, or null.
   * Returns {kind, title, what, todo}.
   */
  function explain(status, body, retryAfter) {
    const detail = body && typeof body.error === "string" ? body.error : "";
    const type = body && typeof body.errorType === "string" ? body.errorType : "";
    if (status === 0) {
      return {
        kind: "network",
        title: "The gateway cannot be reached",
        what: "Your browser got no answer from the metrics gateway.",
        todo: "Check your connection and reload the page. If it keeps happening, the platform may be down: check the platform status page.",
      };
    }
    if (status === 401) {
      return {
        kind: "credentials",
        title: "Your credentials are no longer accepted",
        what: "The service key or binding you signed in with has been deleted, rotated or revoked" +
          (detail ? " (" + detail + ")" : "") + ".",
        todo: "Get the current credentials with `cf service-key INSTANCE KEY` (create one with `cf create-service-key INSTANCE KEY` if needed), close this browser window so it forgets the old password, then open the page again and sign in.",
      };
    }
    if (status === 403) {
      return {
        kind: "refused",
        title: "The gateway refused this request",
        what: (detail || "This endpoint is not available to tenants") +
          ". The gateway only serves what it can restrict to your own services; admin, remote read/write, TSDB status, configuration and flags are refused.",
        todo: "Use the query, series, labels and targets endpoints instead. If you think this should be allowed, ask the platform operators.",
      };
    }
    if (status === 429) {
      return {
        kind: "rate-limited",
        title: "Too many requests",
        what: "You are sending queries faster than the gateway allows" + (detail ? " (" + detail + ")" : "") + ".",
        todo: retryText(retryAfter) + " and try again; dashboards with many panels may need a longer refresh interval.",
      };
    }
    if (status === 422 || ((status === 400 || status === 503) && EXPENSIVE.test(detail))) {
      return {
        kind: "expensive",
        title: "That query is too expensive",
        what: "Prometheus refused to run it: " + (detail || "it would touch too much data") + ".",
        todo: "Choose a shorter time range, pick one service, or aggregate (for example avg by (cf_service_instance_name) (...)).",
      };
    }
    if (status === 504 || type === "timeout" || (status === 503 && TIMEOUT.test(detail))) {
      return {
        kind: "timeout",
        title: "That query took too long",
        what: "It was stopped before it finished" + (detail ? " (" + detail + ")" : "") + ".",
        todo: "Choose a shorter time range or one service, or aggregate the result, then try again.",
      };
    }
    if (status === 400) {
      return {
        kind: "bad-query",
        title: "The query is not valid",
        what: detail || "Prometheus could not parse it.",
        todo: "Check the PromQL expression (brackets, quotes, label names), or clear it to use the metric picker.",
      };
    }
    if (status === 502 || status === 503) {
      return {
        kind: "unavailable",
        title: "Metrics are temporarily unavailable",
        what: "The gateway cannot reach Prometheus right now" + (detail ? " (" + detail + ")" : "") + ".",
        todo: "Nothing is wrong with your credentials. Try again in a minute; if it lasts, contact the platform operators.",
      };
    }
    return {
      kind: "unexpected",
      title: "Unexpected error (HTTP " + status + ")",
      what: detail || "The gateway answered with an error.",
      todo: "Reload the page. If it persists, contact the platform operators and mention the time it happened.",
    };
  }

  global.TMErrors = { explain: explain };
})(window);
