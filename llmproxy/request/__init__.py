"""The request path once routed: the attempt ledger (``attempt``) and the walk
of attempts → adapter → upstream → client (``forward``)."""
