"""The terminal: what a run prints while it works, and Ctrl-C.

``Console`` groups each part's lines, shows the background jobs' progress and
the estimated time left; ``Interrupt`` turns Ctrl-C into one clean stop of the
run wherever it lands (``unblock_sigint``/``ignore_sigint`` around start-up and
shutdown).
"""
import signal
import sys
import threading
import time

from prose import plural_text


class Interrupt:
    """Ctrl-C as a ``KeyboardInterrupt`` in the main thread, raised again every 0.2 s
    until ``main()``'s handler has taken it (``take``): Python drops an exception raised
    while a finalizer or weakref callback runs ("Exception ignored in ..."), and the run
    would then go on as if nothing had happened."""

    def __init__(self):
        self.pending = self.taken = False

    def handler(self, signum, frame):
        if self.taken:                  # main() is already stopping the run
            return
        if not self.pending:
            self.pending = True
            threading.Thread(target=self._repeat, name="sigint-repeat", daemon=True).start()
        raise KeyboardInterrupt

    def _repeat(self):
        import _thread
        for _ in range(50):             # 10 s at most
            time.sleep(0.2)
            if self.taken:
                return
            _thread.interrupt_main(signal.SIGINT)

    def take(self):
        self.taken = True

    def install(self):
        """Take over SIGINT and the unraisable-exception hook (where Python reports the
        dropped ``KeyboardInterrupt`` with a traceback: it is raised again, so it is not
        reported); ``restore`` undoes both."""
        self._saved = (signal.getsignal(signal.SIGINT), sys.unraisablehook)
        signal.signal(signal.SIGINT, self.handler)
        sys.unraisablehook = self._unraisable

    def _unraisable(self, args):
        if not isinstance(args.exc_value, KeyboardInterrupt):
            self._saved[1](args)

    def restore(self):
        if getattr(self, "_saved", None) is not None:
            signal.signal(signal.SIGINT, self._saved[0])
            sys.unraisablehook, self._saved = self._saved[1], None


def unblock_sigint():
    """Deliver a Ctrl-C held back while the modules loaded (see the top of the file)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def ignore_sigint():
    """From here on Ctrl-C is ignored: the clean-up, or the final swap of out/, runs
    to its end (each takes a moment)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:      # not the main thread: nothing to protect against here
        pass


class Console:
    """The run's console: each part's header, then the lines of the jobs that belong
    to it, and estimates of the time left.

    A worker job's printed lines (``Jobs`` ``sink``) are kept until the part of
    their ``group`` starts (``begin``), then printed; while it runs they are
    printed as they arrive. Lines of a part that has ended are printed with its
    code in front; lines without a group (warm-up) at once. ``install`` routes
    this process's own ``print`` through the console too, so nothing
    interleaves mid-line.

    Every ``interval`` seconds while a part runs, the console says how long the
    background jobs will take (``Jobs.remaining``): on a terminal as one status
    line rewritten in place, otherwise (a pipe, a file) as a plain line, at most
    one per ``interval`` and only when the estimate changed.

    Parameters
    ----------
    stream : text stream, optional
        Where everything goes (default: ``sys.stdout`` when created).
    tty : bool, optional
        Rewrite one status line in place (default: ``stream.isatty()``).
    interval : float, optional
        Seconds between estimates (default 1 on a terminal, 10 otherwise).
    """

    def __init__(self, stream=None, tty=None, interval=None):
        self.out = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                tty = bool(self.out.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.interval = interval if interval is not None else (1.0 if tty else 10.0)
        self.jobs = None
        self._lock = threading.RLock()
        self._pending = {}          # group -> lines printed before its part started
        self._current = None        # the code of the running part
        self._ended = set()
        self._status = ""           # the status line on screen (tty only)
        self._last_estimate = None
        self._end = None            # smoothed estimate of when the background jobs finish (monotonic s)
        self._stop = threading.Event()
        self._ticker = None
        self._saved_stdout = None

    # ----------------------------------------------------------------- output
    def _write(self, text):
        """Write whole lines (``text`` ends with a newline), under the status line."""
        with self._lock:
            if self._status:
                self.out.write("\r\033[K")
            self.out.write(text)
            if self._status:
                self.out.write(self._status)
            self.out.flush()

    def __call__(self, *args, sep=" ", end="\n", flush=False, file=None):
        """``print`` for the part loop and ``main`` (to ``file`` when one is given)."""
        if file is not None:
            print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        self._write(sep.join(str(a) for a in args) + end)

    def job_line(self, group, key, line):
        """The ``Jobs`` sink: one line a job printed."""
        with self._lock:
            if group is None or group == self._current:
                self._write(line + "\n")
            elif group in self._ended:
                self._write(f"    [{group}] {line.strip()}\n")
            else:
                self._pending.setdefault(group, []).append(line)

    def install(self):
        """Route ``sys.stdout`` through the console until ``close``; returns self."""
        if self._saved_stdout is None:
            self._saved_stdout = sys.stdout
            sys.stdout = _ConsoleStream(self)
        return self

    # ------------------------------------------------------------------ parts
    def begin(self, code, header):
        """Part ``code`` starts: print ``header``, the lines its jobs printed so far
        and the estimate of the time left."""
        with self._lock:
            self._write(header + "\n")
            self._current = code
            lines = self._pending.pop(code, [])
            if lines:
                self._write("".join(line + "\n" for line in lines))
            text = self.estimate(code)
            if text:
                self._write(f"    {text}\n")
                self._last_estimate = text
        if self._ticker is None and self.jobs is not None and self.jobs.workers:
            self._ticker = threading.Thread(target=self._tick, name="console-estimate", daemon=True)
            self._ticker.start()

    def end(self, code):
        """Part ``code`` has ended: later lines of its jobs are printed with its code."""
        with self._lock:
            self._clear_status()
            self._current = None
            self._ended.add(code)
            lines = self._pending.pop(code, [])
            if lines:
                self._write("".join(f"    [{code}] {line.strip()}\n" for line in lines))
            text = self.estimate()
            if text and text != self._last_estimate and self.jobs.remaining() is not None:
                self._write(f"    {text}\n")
                self._last_estimate = text

    def close(self, pending=True):
        """Stop the estimates, print the lines no part showed (unless not ``pending``:
        they are dropped), restore ``sys.stdout``. Safe to call again."""
        self._stop.set()
        if self._ticker is not None and self._ticker.ident is not None:   # started (Ctrl-C may
            self._ticker.join(timeout=2.0)                                # hit inside start())
        with self._lock:
            self._clear_status()
            for group, lines in self._pending.items() if pending else ():
                self._write("".join(f"    [{group}] {line.strip()}\n" for line in lines))
            self._pending = {}
        if self._saved_stdout is not None:
            stream = sys.stdout
            sys.stdout, self._saved_stdout = self._saved_stdout, None
            if isinstance(stream, _ConsoleStream) and stream._buf:
                self._write(stream._buf + "\n")

    # -------------------------------------------------------------- estimates
    # The estimate follows the jobs' own (``Jobs.remaining``) through an exponentially
    # smoothed finishing time, so that one job finishing early or a part queueing its
    # next jobs moves it a little, not from 45 s to 3 min and back.
    SMOOTHING = 0.3

    def smoothed(self, raw, now=None):
        """Seconds left from the raw estimate ``raw``, smoothed over successive calls."""
        now = time.monotonic() if now is None else now
        end = now + raw
        self._end = end if self._end is None else self._end + self.SMOOTHING * (end - self._end)
        return max(self._end - now, 1.0)

    def estimate(self, code=None):
        """One sentence on the time the background jobs still need (smoothed) and how
        many have finished (a count that only goes up); None when no job is unfinished.
        It gives a number only when ``Jobs.remaining`` has a basis (a finished job or
        reported progress)."""
        if self.jobs is None:
            return None
        status = self.jobs.status()
        left = [s for s in status if s.state in ("waiting", "running")]
        if not left:
            self._end = None
            return None
        done = sum(s.state == "done" for s in status)
        running = sum(s.state == "running" for s in left)
        counts = f"{plural_text(done, 'background job')} done, {running} running"
        total = self.jobs.remaining()
        if total is None:
            return f"{counts}; no time estimate yet (none has finished or reported progress)"
        return f"about {seconds_text(self.smoothed(total))} left ({counts})"

    def _tick(self):
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._current is None:
                    continue
                try:
                    text = self.estimate(self._current)
                except Exception:       # a job table changing under us: try again later
                    continue
                if self.tty:
                    self._clear_status()
                    if text:
                        self._status = f"    ... {text}"
                        self.out.write(self._status)
                        self.out.flush()
                elif text and text != self._last_estimate:
                    self._write(f"    {text}\n")
                    self._last_estimate = text

    def _clear_status(self):
        if self._status:
            self.out.write("\r\033[K")
            self.out.flush()
            self._status = ""


class _ConsoleStream:
    """``sys.stdout`` while a ``Console`` is installed: whole lines go through it."""

    def __init__(self, console):
        self._console, self._buf = console, ""

    def write(self, text):
        self._buf += str(text)
        if "\n" in self._buf:
            whole, self._buf = self._buf.rsplit("\n", 1)
            self._console._write(whole + "\n")
        return len(text)

    def flush(self):            # an unfinished line waits for its end
        self._console.out.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self._console.out, name)


def seconds_text(t):
    """A time estimate as people say it: "8 s", "2 min", "1.5 h"."""
    if t < 90:
        return f"{max(1, round(t))} s"
    if t < 5400:
        return f"{round(t / 60)} min"
    return f"{t / 3600:.1f} h"
