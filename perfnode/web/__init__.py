"""DICOMweb services (QIDO-RS, WADO-RS, STOW-RS) and the perfusion viewer, over the archive facade."""
