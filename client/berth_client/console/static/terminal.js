/* berth's terminal component: an xterm.js widget that shows a terminal topic's frames
   ({type: "output", data} and {type: "status", data: {status, exit_code}}) and, when given
   onLine/onInterrupt, reads a line of input (Enter) and Ctrl-C.
   Used by the console and, alone, by terminal.html (a browser with a connect URL). */
(function (global) {
  "use strict";

  const ENDED = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "WORKER_LOST", "UNDELIVERABLE"]);

  class BerthTerminal {
    constructor(element, options = {}) {
      this.options = options;
      this.line = "";
      this.term = new global.Terminal({
        convertEol: true,
        cursorBlink: Boolean(options.onLine),
        disableStdin: !options.onLine,
        fontSize: 14,
        scrollback: 5000,
        theme: { background: "#0c111d" },
      });
      this.fit = global.FitAddon ? new global.FitAddon.FitAddon() : null;
      if (this.fit) this.term.loadAddon(this.fit);
      this.term.open(element);
      this.resize();
      global.addEventListener("resize", () => this.resize());
      if (options.onLine) this.term.onData((data) => this.typed(data));
    }

    resize() { if (this.fit) { try { this.fit.fit(); } catch (e) { /* hidden */ } } }

    prompt() { if (this.options.onLine) this.term.write("\x1b[1;34m$\x1b[0m " + this.line); }

    typed(data) {
      for (const ch of data) {
        if (ch === "\r") {
          const line = this.line.trim();
          this.line = "";
          this.term.write("\r\n");
          if (line) this.options.onLine(line); else this.prompt();
        } else if (ch === "\x03") {
          this.line = "";
          this.term.write("^C\r\n");
          if (this.options.onInterrupt) this.options.onInterrupt();
        } else if (ch === "\x7f") {
          if (this.line) { this.line = this.line.slice(0, -1); this.term.write("\b \b"); }
        } else if (ch >= " ") {
          this.line += ch;
          this.term.write(ch);
        }
      }
    }

    /* One frame of the terminal's topic; true when it ends a command. */
    frame(message) {
      if (message.type === "output") {
        this.term.write(message.data);
        return false;
      }
      if (message.type === "status" && message.data && ENDED.has(message.data.status)) {
        const code = message.data.exit_code;
        const colour = message.data.status === "SUCCEEDED" ? "32" : "31";
        this.term.write(`\x1b[${colour}m[${message.data.status}${code === null || code === undefined ? "" : " " + code}]\x1b[0m\r\n`);
        return true;
      }
      return false;
    }

    notice(text) { this.term.write(`\x1b[90m${text}\x1b[0m\r\n`); }

    clear() { this.term.reset(); }

    /* The visible text, line by line (what a test or a screen reader reads). */
    text() {
      const buffer = this.term.buffer.active;
      const lines = [];
      for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
      return lines.join("\n").replace(/\n+$/, "");
    }
  }

  /* Opens a WebSocket URL (a ticket's) and hands each JSON message to onMessage. */
  function listen(url, onMessage, onState = () => {}) {
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => onState("open"));
    socket.addEventListener("close", () => onState("closed"));
    socket.addEventListener("error", () => onState("error"));
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      onMessage(message);
    });
    return socket;
  }

  global.BerthTerminal = BerthTerminal;
  global.berthListen = listen;
  global.BERTH_ENDED = ENDED;
})(window);
