"""The audit feature's failures: none of its own. A bad filter is a 422 from its schema; a
missing permission, the 403 every route shares."""
