"""Who is acting: the dashboard is read-only until someone signs in.

    who = actor()        # the signed-in user, or None: no action buttons, and an action is refused
    sidebar()            # the sign-in (or "signed in as") box

A user signs in with a password or token from the users file (`nas.auth`, `nas user add NAME`), or
through Streamlit's OIDC (`st.login`) where `.streamlit/secrets.toml` has an `[auth]` section. Only the
embedded dashboard on a loopback address (`nas dashboard` on 127.0.0.1, which only this machine reaches)
acts as the user who started it without a sign-in; the service's dashboard never does. The name is what
the queue records as the submitter and in every event.
"""

from __future__ import annotations

import getpass
import time

import streamlit as st

from nas import auth
from nas.settings import settings

__all__ = ["actor", "local", "refuse", "sidebar"]

_USER = "_nas_signed_in"  # session state, not a widget's key: a browser cannot set it
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _oidc() -> bool:
    """Whether Streamlit's OIDC sign-in is configured (an [auth] section in secrets.toml)."""
    try:
        return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)
    except Exception:
        return False


def _oidc_user() -> str | None:
    try:
        if _oidc() and st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))
    except Exception:
        pass
    return None


def _local_user(service: bool) -> str | None:
    """The embedded dashboard served on loopback only acts as its own user; anything else needs a sign-in."""
    if service or str(st.get_option("server.address") or "") not in LOOPBACK:
        return None
    try:
        return getpass.getuser()
    except Exception:
        return "local"


def local(service: bool) -> bool:
    """Whether this session acts as the local user (the embedded dashboard on loopback, nobody signed in)."""
    return not (st.session_state.get(_USER) or _oidc_user()) and _local_user(service) is not None


def actor(service: bool) -> str | None:
    """Who acts in this session: the signed-in user, the local user (see the module), or None (read-only)."""
    return st.session_state.get(_USER) or _oidc_user() or _local_user(service)


def refuse(what: str) -> None:
    """Say that `what` needs a sign-in, and stop the page there."""
    st.info(f":material/lock: Sign in (in the sidebar) to {what}. Without a sign-in the dashboard is read-only.")
    st.stop()


def sidebar(service: bool) -> None:
    signed = st.session_state.get(_USER) or _oidc_user()
    if signed:
        st.caption(f":material/person: signed in as **{signed}**")
        if st.button("Sign out", key="nas_sign_out"):
            if st.session_state.pop(_USER, None) is None and _oidc():
                st.logout()
            st.rerun()
        return
    local = _local_user(service)
    if local:
        st.caption(f":material/person: acting as **{local}** (served on this machine only)")
        return
    users_file = settings().users_file
    try:
        have_users = bool(auth.read_users(users_file))
    except Exception as e:
        st.caption(f":material/warning: {e}")
        have_users = False
    if _oidc() and st.button("Sign in with your identity provider", key="nas_sign_in_oidc"):
        st.login()
    if have_users:
        with st.form("nas_sign_in", clear_on_submit=True):
            name = st.text_input("User", key="nas_user")
            secret = st.text_input("Password or token", type="password", key="nas_secret")
            if st.form_submit_button("Sign in"):
                who = auth.authenticate(users_file, name, secret)
                if who is None:
                    time.sleep(1.0)  # a guess costs a second
                    st.error("That user and password (or token) are not recognised.")
                else:
                    st.session_state[_USER] = who
                    st.rerun()
    elif not _oidc():
        st.caption(":material/lock: read-only: no sign-in is configured (`nas user add NAME`; see "
                   "docs/service.md)")
