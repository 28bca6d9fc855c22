"""The official Databricks provider's surface, kept apart from the backend's own code: its
operators' and sensor's arguments (:mod:`.arguments`) and its connection's fields (:mod:`.connection`).

Deliberately empty of imports: ``hook`` reads connections through ``compat.connection`` while
``compat.arguments`` names ``hook``'s default connection id.
"""
