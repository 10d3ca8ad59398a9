"""Immutable details of the event being handled (``flow.event_info``):
defined with the engine (``mos.dualstack.info``), public here."""

from mos.dualstack.info import EndInfo, ErrorInfo, NewData, Rexmit, StateChange

__all__ = ["StateChange", "ErrorInfo", "EndInfo", "NewData", "Rexmit"]
