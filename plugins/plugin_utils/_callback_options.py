# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback options that a play variable or an extra variable may set (v2kvm_dashboard_*, v2kvm_web_*).

Ansible reads a callback's options from the environment and ansible.cfg only; the dashboard and web
callbacks also read the variables their DOCUMENTATION names under ``vars`` when the first play starts.
"""

from __future__ import annotations

from ansible.config.manager import ensure_type


def option_vars(documentation: str) -> dict:
    """option name -> {var, type} for every option a play variable may set (from DOCUMENTATION)."""
    import yaml

    options = yaml.safe_load(documentation)["options"]
    return {name: {"var": spec["vars"][0]["name"], "type": spec.get("type", "str")}
            for name, spec in options.items() if spec.get("vars")}


def options_from_play(callback, play, option_vars_: dict, name: str) -> bool:
    """Set ``callback``'s options from the play's vars, overridden by extra vars (-e); True if one changed."""
    try:
        found = dict(play.get_vars() or {})
        found.update(getattr(play.get_variable_manager(), "extra_vars", None) or {})
    except Exception as exc:  # no variables to read: the configured options stand
        callback._display.vvvv("%s: could not read play variables: %s" % (name, exc))
        return False
    changed = False
    for option, spec in option_vars_.items():
        if spec["var"] in found:
            value = ensure_type(found[spec["var"]], spec["type"])
            changed = changed or value != callback.get_option(option)
            callback.set_option(option, value)
    return changed
