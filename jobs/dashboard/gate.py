"""The dashboard's server-side password gate, and the launcher that installs it.

Run the dashboard with ``python -m jobs.dashboard.gate [streamlit options]`` (``make run`` and the
systemd unit do): it installs the gate, then hands off to ``streamlit run dashboard.py``.

Why this patches Streamlit: the password (``OCRJOBS_DASHBOARD_PASSWORD``) is checked by the app
script, per session, but Streamlit serves some things without running the script, and it has no
public API to authorise them per session:

- ``PUT/DELETE /_stcore/upload_file/<session>/<file>`` only checks that the session is active, and
  a bare websocket session that never logged in is active (five 300 MB PUTs took 1.5 GB);
- ``GET /media/<file>`` serves any file to anyone who has its URL;
- with a ``pages/`` folder next to the script, Streamlit runs ``pages/*.py`` as automatic pages
  (``/job_page``, ``/common``) without running ``dashboard.py`` first, until some session calls
  ``st.navigation``.

So the launcher (1) switches the automatic pages off before the first session, and (2) puts one
ASGI middleware in front of Streamlit's own: every HTTP request must name an allowed Host
(``server.allowedHosts``, which Streamlit itself applies only to the websocket), and, with a
password set, an upload must come from a session that logged in, and a media file is served only to
a browser whose XSRF cookie belongs to a logged-in session. Checked against Streamlit 1.67 (its
Starlette server); if an internal it needs is missing the launcher refuses to start, and
``dashboard.py`` refuses to serve a password-protected dashboard that was started without it.
"""

from __future__ import annotations

import collections
import hmac
import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

#: Wrong passwords allowed in any LOCKOUT_WINDOW_S, over all sessions, before every login waits.
MAX_FAILURES = 10
LOCKOUT_WINDOW_S = 60.0
#: Each wrong password costs its session this long, so guessing is slow even below the limit.
FAILURE_DELAY_S = 1.0
DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard.py"

_STATE_MODULE = "_ocrjobs_dashboard_gate_state"


def _shared_state() -> Any:
    """The gate's state, kept outside this module: Streamlit re-imports an edited module of the app's
    folder (jobs/ included) while it serves, and that fresh copy must not forget the installed gate
    or who logged in (the middleware still holds the old copy)."""
    state = sys.modules.get(_STATE_MODULE)
    if state is None:
        state = types.ModuleType(_STATE_MODULE)
        state.lock = threading.Lock()
        state.installed = False
        #: session id -> the XSRF token of the browser that logged in with it (None when it sent none).
        state.sessions = {}
        #: monotonic times of recent wrong passwords, over all sessions.
        state.failures = collections.deque()
        sys.modules[_STATE_MODULE] = state
    return state


_state = _shared_state()


class GateError(RuntimeError):
    """The gate cannot be installed on this Streamlit, or a login is refused for now."""


def password() -> str | None:
    return os.environ.get("OCRJOBS_DASHBOARD_PASSWORD") or None


def installed() -> bool:
    """Whether this process was started by the launcher, so uploads and media are gated too."""
    return bool(_state.installed)


def check_password(given: str, expected: str) -> bool:
    """Constant-time compare; wrong answers are slowed down and, in bulk, lock every login out."""
    now = time.monotonic()
    with _state.lock:
        while _state.failures and now - _state.failures[0] > LOCKOUT_WINDOW_S:
            _state.failures.popleft()
        if len(_state.failures) >= MAX_FAILURES:
            raise GateError(f"Too many wrong passwords; try again in {LOCKOUT_WINDOW_S:.0f} seconds.")
    if hmac.compare_digest(given.encode(), expected.encode()):
        return True
    with _state.lock:
        _state.failures.append(now)
    time.sleep(FAILURE_DELAY_S)
    return False


def log_in(session_id: str, cookies: dict[str, str]) -> None:
    """Remember that this session (and the browser holding its XSRF cookie) gave the password."""
    from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME

    token = _token(cookies.get(XSRF_COOKIE_NAME))
    with _state.lock:
        _state.sessions[session_id] = token
        for sid in [s for s in _state.sessions if not _active(s)]:
            del _state.sessions[sid]


def logged_in(session_id: str | None) -> bool:
    with _state.lock:
        return session_id is not None and session_id in _state.sessions and _active(session_id)


def _upload_allowed(session_id: str, xsrf_cookie: str | None) -> bool:
    """An upload must name a logged-in session and come from the browser that logged it in."""
    token = _token(xsrf_cookie)
    with _state.lock:
        if session_id not in _state.sessions:
            return False
        expected = _state.sessions[session_id]
    same_browser = expected is None or (token is not None and hmac.compare_digest(expected, token))
    return same_browser and _active(session_id)


def _browser_logged_in(xsrf_cookie: str | None) -> bool:
    token = _token(xsrf_cookie)
    if token is None:
        return False
    with _state.lock:
        sessions = [s for s, t in _state.sessions.items() if t is not None and hmac.compare_digest(t, token)]
    return any(_active(s) for s in sessions)


def _token(xsrf_cookie: str | None) -> bytes | None:
    from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string

    return decode_xsrf_token_string(xsrf_cookie)[0] if xsrf_cookie else None


def _active(session_id: str) -> bool:
    from streamlit.runtime import Runtime

    # No runtime: the script runs under AppTest, where sessions live as long as the test.
    return not Runtime.exists() or Runtime.instance().is_active_session(session_id)


class GateMiddleware:
    """ASGI middleware in front of Streamlit's routes: Host allow-list, gated uploads and media."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal:
                from starlette.responses import PlainTextResponse

                await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: dict[str, Any]) -> str | None:
        from starlette.requests import Request
        from streamlit import config
        from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME
        from streamlit.web.server.starlette.starlette_websocket import is_host_allowed

        request = Request(scope)
        if not is_host_allowed(request.headers.get("host")):
            return "Host not allowed (server.allowedHosts)."
        if not password() or request.method == "OPTIONS":
            return None
        base = config.get_option("server.baseUrlPath").strip("/")
        path = request.url.path.removeprefix(f"/{base}" if base else "").lstrip("/")
        parts, cookie = path.split("/"), request.cookies.get(XSRF_COOKIE_NAME)
        if path.startswith("_stcore/upload_file/") and not (len(parts) > 2 and _upload_allowed(parts[2], cookie)):
            return "Log in to the dashboard first."
        if parts[0] == "media" and not _browser_logged_in(cookie):
            if not config.get_option("server.enableXsrfProtection"):
                return "Downloads behind a password need server.enableXsrfProtection on (its cookie marks the browser)."
            return "Log in to the dashboard first."
        if path.startswith("_stcore/agent/"):
            return "The agent API is off while the dashboard has a password."
        return None


def install() -> None:
    """Switch off automatic pages and put GateMiddleware first; refuse if Streamlit has changed."""
    try:
        from starlette.middleware import Middleware
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.web.server.starlette import starlette_app
        from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string  # noqa: F401
        from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME  # noqa: F401
        from streamlit.web.server.starlette.starlette_websocket import is_host_allowed  # noqa: F401

        original = starlette_app.create_streamlit_middleware
        assert hasattr(PagesManager, "uses_pages_directory")
    except (ImportError, AttributeError, AssertionError) as e:
        raise GateError(
            f"This Streamlit has no {e} that the dashboard's password gate needs; use the version in requirements.txt"
        ) from e
    if _state.installed:
        return

    def gated_middleware() -> list[Any]:
        return [Middleware(GateMiddleware), *original()]

    starlette_app.create_streamlit_middleware = gated_middleware
    PagesManager.uses_pages_directory = False
    _state.installed = True


def main(argv: list[str] | None = None) -> None:
    """``python -m jobs.dashboard.gate [streamlit options]``: the gated ``streamlit run dashboard.py``."""
    from streamlit.web import cli

    install()
    cli.main(["run", str(DASHBOARD), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    # Run the launcher from the imported module, so the app script sees the same gate state.
    from jobs.dashboard import gate

    gate.main()
