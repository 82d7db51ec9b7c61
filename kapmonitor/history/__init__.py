"""The session record: the history store, the service that fills it, and session reports.

- :mod:`kapmonitor.history.store`: the SQLite database and its queries;
- :mod:`kapmonitor.history.service`: records what the daemon does, off the hot path;
- :mod:`kapmonitor.history.record`: one session gathered from the store;
- :mod:`kapmonitor.history.pages`: the report's pages (matplotlib figures);
- :mod:`kapmonitor.history.report`: writing a report (PDF, PNG, CSV, FHIR), and
  ``kapmonitor report``;
- :mod:`kapmonitor.history.trace`: the session as a ``kapmonitor replay`` CSV trace;
- :mod:`kapmonitor.history.fhir`: the session as a FHIR R4 Bundle.
"""
