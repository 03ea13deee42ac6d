/* Script of the /c2c admin page. No inline code, no eval, no external resources: it runs under
 * "Content-Security-Policy: default-src 'self'". Every value from the server is inserted as text. */
(function () {
  "use strict";

  var main = document.getElementById("c2c-main");
  var isAdmin = main !== null && main.dataset.admin === "true";

  function byId(id) {
    return document.getElementById(id);
  }

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      if (key === "text") {
        node.textContent = attributes[key];
      } else if (key === "className") {
        node.className = attributes[key];
      } else {
        node.setAttribute(key, attributes[key]);
      }
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function say(node, text, kind) {
    node.textContent = text;
    node.classList.remove("c2c-error", "c2c-ok");
    if (kind) {
      node.classList.add("c2c-" + kind);
    }
  }

  /* Call the API; resolves to {ok, status, body}; never rejects (network errors give status 0). */
  function api(path, options) {
    var init = Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    return fetch(path, init).then(
      function (response) {
        return response.text().then(function (text) {
          var body = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch (error) {
            body = text;
          }
          return { ok: response.ok, status: response.status, body: body };
        });
      },
      function (error) {
        return { ok: false, status: 0, body: String(error) };
      }
    );
  }

  function errorText(result) {
    var body = result.body;
    var detail = body && typeof body === "object" ? body.detail || body.title || body.message : body;
    if (detail && typeof detail !== "string") {
      detail = JSON.stringify(detail);
    }
    return (result.status ? "Error " + result.status : "Network error") + (detail ? ": " + detail : "");
  }

  function busy(button, promise) {
    if (button) {
      button.disabled = true;
    }
    return promise.then(function (value) {
      if (button) {
        button.disabled = false;
      }
      return value;
    });
  }

  function pre(value) {
    return element("pre", { text: typeof value === "string" ? value : JSON.stringify(value, null, 2) });
  }

  function milliseconds(seconds) {
    return typeof seconds === "number" ? (seconds * 1000).toFixed(1) + " ms" : "";
  }

  function statusBadge(code) {
    var good = typeof code === "number" && code < 400;
    return element("span", { className: "c2c-status " + (good ? "c2c-status-ok" : "c2c-status-bad"), text: String(code) });
  }

  /* ---------------------------------------------------------------- login state */

  function showUser() {
    var target = byId("c2c-auth-user");
    var state = byId("c2c-login-state");
    api("auth/status").then(function (result) {
      if (!result.ok || !result.body || typeof result.body !== "object") {
        return;
      }
      var status = result.body;
      var user = status.user && (status.user.display_name || status.user.login);
      var method = status.type && status.type !== "none" ? " (" + status.type + ")" : "";
      if (status.is_logged_in) {
        state.textContent = "Logged in" + (user ? " as " + user : "") + method + (status.is_admin ? ", admin" : ", no admin access");
        if (target) {
          target.textContent = "Logged in" + (user ? " as " + user : "") + method + ".";
        }
      }
    });
  }

  function setUpLogin() {
    var form = byId("c2c-login-form");
    if (!form) {
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var message = byId("c2c-login-error");
      var body = new URLSearchParams(new FormData(form));
      busy(byId("c2c-login"), api(form.getAttribute("action"), { method: "POST", body: body })).then(function (result) {
        if (result.ok) {
          window.location.reload();
        } else {
          message.hidden = false;
          message.textContent = result.status === 401 || result.status === 403 ? "Wrong secret." : errorText(result);
        }
      });
    });
  }

  /* ---------------------------------------------------------------- health checks */

  function runHealthChecks(tags, button) {
    var summary = byId("c2c-health-summary");
    var table = byId("c2c-health-table");
    var query = tags ? "?tags=" + encodeURIComponent(tags) : "";
    say(summary, "Running…");
    return busy(button, api("health_checks" + query)).then(function (result) {
      var body = result.body;
      if (!body || typeof body !== "object" || !Array.isArray(body.entities)) {
        say(summary, errorText(result), "error");
        table.hidden = true;
        return;
      }
      var tbody = table.tBodies[0];
      clear(tbody);
      var seenTags = {};
      body.entities.forEach(function (entity) {
        (entity.tags || []).forEach(function (tag) {
          seenTags[tag] = true;
        });
        var payload = entity.payload === undefined || entity.payload === null ? "" : entity.payload;
        var payloadCell = payload === "" ? "" : element("details", {}, [element("summary", { text: "show" }), pre(payload)]);
        tbody.appendChild(
          element("tr", { "data-check": entity.name }, [
            element("td", { text: entity.name }),
            element("td", { text: (entity.tags || []).join(", ") }),
            element("td", {}, [statusBadge(entity.status_code)]),
            element("td", { text: milliseconds(entity.time_taken) }),
            element("td", {}, payloadCell ? [payloadCell] : []),
          ])
        );
      });
      table.hidden = false;
      var failed = body.entities.filter(function (entity) {
        return entity.status_code >= 400;
      }).length;
      say(
        summary,
        body.entities.length + " check(s)" + (tags ? " tagged " + tags : "") + ", " + failed + " failing, status " +
          body.status_code + ", " + milliseconds(body.time_taken),
        failed ? "error" : "ok"
      );
      if (!tags) {
        showTagButtons(Object.keys(seenTags).sort());
      }
    });
  }

  function showTagButtons(tags) {
    var container = byId("c2c-health-tag-buttons");
    clear(container);
    if (!tags.length) {
      container.hidden = true;
      return;
    }
    container.appendChild(element("span", { className: "c2c-muted", text: "Run by tag:" }));
    tags.forEach(function (tag) {
      var button = element("button", { type: "button", className: "c2c-small c2c-secondary", text: tag });
      button.addEventListener("click", function () {
        byId("c2c-health-tags").value = tag;
        runHealthChecks(tag, button);
      });
      container.appendChild(button);
    });
    container.hidden = false;
  }

  function setUpHealthChecks() {
    var form = byId("c2c-health-form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      runHealthChecks(byId("c2c-health-tags").value.trim(), byId("c2c-health-run-tags"));
    });
    byId("c2c-health-run-all").addEventListener("click", function () {
      byId("c2c-health-tags").value = "";
      runHealthChecks("", byId("c2c-health-run-all"));
    });
  }

  /* ---------------------------------------------------------------- logging levels */

  function overridesList(body) {
    var list = body && typeof body === "object" && !Array.isArray(body) && "overrides" in body ? body.overrides : body;
    if (Array.isArray(list)) {
      return list.map(function (item) {
        return { name: item.name, level: item.level };
      });
    }
    if (list && typeof list === "object") {
      return Object.keys(list).map(function (name) {
        return { name: name, level: list[name] };
      });
    }
    return [];
  }

  function listOverrides() {
    var tbody = byId("c2c-logging-overrides").tBodies[0];
    return api("logging/overrides").then(function (result) {
      clear(tbody);
      if (!result.ok) {
        tbody.appendChild(element("tr", {}, [element("td", { colspan: "3", className: "c2c-error", text: errorText(result) })]));
        return;
      }
      var overrides = overridesList(result.body);
      if (!overrides.length) {
        tbody.appendChild(element("tr", {}, [element("td", { colspan: "3", className: "c2c-muted", text: "No override." })]));
      }
      overrides.forEach(function (override) {
        var button = element("button", { type: "button", className: "c2c-small c2c-secondary", text: "Clear" });
        button.addEventListener("click", function () {
          busy(button, api("logging/overrides/" + encodeURIComponent(override.name), { method: "DELETE" })).then(function (answer) {
            say(byId("c2c-logging-result"), answer.ok ? "Override of " + override.name + " cleared." : errorText(answer), answer.ok ? "ok" : "error");
            listOverrides();
          });
        });
        tbody.appendChild(
          element("tr", { "data-logger": override.name }, [
            element("td", { text: override.name }),
            element("td", { text: override.level }),
            element("td", {}, [button]),
          ])
        );
      });
    });
  }

  function describeLevel(body) {
    if (!body || typeof body !== "object") {
      return String(body);
    }
    var text = body.name + ": " + body.level;
    if (body.effective_level && body.effective_level !== body.level) {
      text += " (effective " + body.effective_level + ")";
    }
    return text;
  }

  function setUpLogging() {
    var form = byId("c2c-logging-form");
    var output = byId("c2c-logging-result");
    var name = byId("c2c-logging-name");
    byId("c2c-logging-get").addEventListener("click", function () {
      busy(byId("c2c-logging-get"), api("logging/level?name=" + encodeURIComponent(name.value.trim()))).then(function (result) {
        say(output, result.ok ? describeLevel(result.body) : errorText(result), result.ok ? null : "error");
      });
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var payload = JSON.stringify({ name: name.value.trim(), level: byId("c2c-logging-level").value });
      busy(
        byId("c2c-logging-set"),
        api("logging/level", { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: payload })
      ).then(function (result) {
        var processes = result.ok && Array.isArray(result.body.processes) ? result.body.processes : [];
        var failed = processes.filter(function (process) {
          return process.status !== "ok";
        }).length;
        var where = processes.length ? " in " + processes.length + " process(es)" + (failed ? ", " + failed + " without answer" : "") : "";
        say(output, result.ok ? "Set " + describeLevel(result.body) + where : errorText(result), result.ok && !failed ? "ok" : "error");
        listOverrides();
      });
    });
    byId("c2c-logging-list").addEventListener("click", listOverrides);
    listOverrides();
  }

  /* ---------------------------------------------------------------- request headers */

  function keyValueTable(values) {
    var rows = Object.keys(values || {}).map(function (key) {
      var value = values[key];
      return element("tr", {}, [
        element("th", { scope: "row", text: key }),
        element("td", {}, [element("code", { text: typeof value === "string" ? value : JSON.stringify(value) })]),
      ]);
    });
    return element("table", { className: "c2c-table" }, [element("tbody", {}, rows)]);
  }

  function setUpHeaders() {
    var button = byId("c2c-headers-show");
    var output = byId("c2c-headers-result");
    button.addEventListener("click", function () {
      busy(button, api("headers")).then(function (result) {
        clear(output);
        if (!result.ok) {
          output.appendChild(element("p", { className: "c2c-error", text: errorText(result) }));
          return;
        }
        var body = result.body;
        output.appendChild(element("h3", { text: "Headers" }));
        output.appendChild(keyValueTable(body.headers));
        output.appendChild(element("h3", { text: "URL" }));
        output.appendChild(keyValueTable(Object.assign({ client: body.client }, body.url)));
        output.appendChild(element("details", {}, [element("summary", { text: "ASGI scope" }), keyValueTable(body.scope)]));
      });
    });
  }

  /* ---------------------------------------------------------------- debug */

  function processTitle(process, extra) {
    return element("h3", { text: process.hostname + " — pid " + process.pid + (extra ? " — " + extra : "") });
  }

  function renderMissing(output, body) {
    (body.missing || []).forEach(function (missing) {
      output.appendChild(
        element("p", { className: "c2c-error", text: "No answer from " + (missing.hostname || "?") + " pid " + (missing.pid || "?") + ": " + missing.status + " " + missing.message })
      );
    });
  }

  function renderStacks(output, body) {
    body.processes.forEach(function (process) {
      var block = element("div", { className: "c2c-process", "data-pid": String(process.pid) }, [
        processTitle(process, process.threads.length + " thread(s), " + process.tasks.length + " task(s)"),
      ]);
      process.threads.forEach(function (thread) {
        block.appendChild(element("details", { className: "c2c-thread" }, [element("summary", { text: "Thread " + thread.name }), pre(thread.stack.join(""))]));
      });
      process.tasks.forEach(function (task) {
        block.appendChild(element("details", { className: "c2c-task" }, [element("summary", { text: "Task " + task.name + " — " + task.coroutine }), pre(task.stack.join(""))]));
      });
      output.appendChild(block);
    });
  }

  function renderMemory(output, body) {
    body.processes.forEach(function (process) {
      var rows = process.top_types.map(function (entry) {
        return element("tr", {}, [element("td", {}, [element("code", { text: entry.type })]), element("td", { text: String(entry.count) })]);
      });
      output.appendChild(
        element("div", { className: "c2c-process", "data-pid": String(process.pid) }, [
          processTitle(process, "RSS " + (process.rss_bytes / 1048576).toFixed(1) + " MiB, " + process.gc_objects + " objects"),
          element("table", { className: "c2c-table" }, [
            element("thead", {}, [element("tr", {}, [element("th", { text: "Type" }), element("th", { text: "Count" })])]),
            element("tbody", {}, rows),
          ]),
        ])
      );
    });
  }

  function renderVersions(output, body) {
    output.appendChild(
      element("p", { className: body.consistent ? "c2c-ok" : "c2c-flag", text: body.consistent ? "All processes run the same versions." : "Some processes run different versions." })
    );
    body.processes.forEach(function (process) {
      var block = element("div", { className: "c2c-process", "data-pid": String(process.pid) }, [
        processTitle(process, "service " + (process.service_version || "?") + (process.git_hash ? " @ " + process.git_hash.slice(0, 12) : "") + ", Python " + process.python),
      ]);
      if (process.differs) {
        var differences = {};
        Object.keys(process.differences).forEach(function (key) {
          differences[key] = process.differences[key].this + " (others: " + process.differences[key].majority + ")";
        });
        block.appendChild(element("p", { className: "c2c-flag", text: "Differs from the other processes:" }));
        block.appendChild(keyValueTable(differences));
      }
      block.appendChild(element("details", {}, [element("summary", { text: Object.keys(process.packages).length + " packages" }), keyValueTable(process.packages)]));
      output.appendChild(block);
    });
  }

  function setUpDebug() {
    var output = byId("c2c-debug-result");
    var summary = byId("c2c-debug-summary");
    [
      ["c2c-debug-stacks", "debug/stacks", renderStacks],
      ["c2c-debug-memory", "debug/memory", renderMemory],
      ["c2c-debug-versions", "versions", renderVersions],
    ].forEach(function (tool) {
      var button = byId(tool[0]);
      button.addEventListener("click", function () {
        say(summary, "Asking every process…");
        busy(button, api(tool[1])).then(function (result) {
          clear(output);
          if (!result.ok) {
            say(summary, errorText(result), "error");
            return;
          }
          say(summary, result.body.processes.length + " process(es) answered" + (result.body.broadcast ? "" : " (broadcast not started: this process only)"), "ok");
          renderMissing(output, result.body);
          tool[2](output, result.body);
        });
      });
    });
  }

  showUser();
  setUpLogin();
  setUpHealthChecks();
  if (isAdmin) {
    setUpLogging();
    setUpHeaders();
    setUpDebug();
  }
})();
