"""Reports: read a sweep back through tracking, rank its configs (one ranking), draw and write the
comparison; never trains anything."""
