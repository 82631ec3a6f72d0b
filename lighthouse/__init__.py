"""Lighthouse: service export/import through the Broker and the clusterset.local DNS server."""
