"""The risk list: TreeSHAP reasons, the ranked list with revenue at risk, risk groups with their plays, and
the report for retention managers."""
