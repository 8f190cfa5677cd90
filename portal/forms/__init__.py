"""Report forms: definitions and their versions, validation of entries, their readable form, submissions."""

from portal.forms.formatting import format_entry
from portal.forms.schema import FIELD_TYPES, check_definition, is_visible
from portal.forms.service import (
    assign,
    assign_builtin_forms,
    ensure_builtin_forms,
    find_form,
    forms_of,
    latest,
    library,
    move,
    not_found,
    public,
    save_definition,
    share,
    submissions_of,
    submit,
    unassign,
    version,
    versions,
)
from portal.forms.validation import entry_errors, validate_entry

__all__ = [
    "FIELD_TYPES", "assign", "assign_builtin_forms", "check_definition", "ensure_builtin_forms", "entry_errors",
    "find_form", "format_entry", "forms_of", "is_visible", "latest", "library", "move", "not_found", "public",
    "save_definition", "share", "submissions_of", "submit", "unassign", "validate_entry", "version", "versions",
]
