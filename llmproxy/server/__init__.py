"""The proxy's HTTP side: the app and its one error middleware (``app``), the
connection below it (``protocol``), who may knock (``door``), the live state
(``runtime``), hot reload (``reload``) and the endpoint handlers (``handlers``)."""
