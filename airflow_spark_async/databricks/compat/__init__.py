"""The official Databricks provider's surface, kept apart from the backend's own code: its
operators' and sensor's arguments (:mod:`.arguments`), its connection's fields (:mod:`.connection`)
and the connection type's form (:mod:`.form`).

Deliberately empty of imports: ``hook`` reads connections through ``compat.connection`` while
``compat.arguments`` names ``hook``'s default connection id.
"""
