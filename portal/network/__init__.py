"""DICOM networking: remote nodes, the query/retrieve SCP handlers, sending (C-STORE SCU, STOW-RS)."""
