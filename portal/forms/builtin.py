"""The report forms every project gets on day one: a chest X-ray TB screening report and an MRI QC report."""

from __future__ import annotations


def _f(name: str, type: str, label: str, *, required: bool = False, help: str = "", options=None,
       min=None, max=None, step=None, unit=None, visible_if=None) -> dict:
    return {"name": name, "type": type, "label": label, "required": required, "help": help,
            "options": options, "min": min, "max": max, "step": step, "unit": unit, "visible_if": visible_if}


CXR_TB_SCREENING = {
    "name": "cxr-tb-screening",
    "title": "Chest X-ray TB screening",
    "description": "Reading of a chest radiograph for pulmonary tuberculosis, as in a screening programme.",
    "fields": [
        _f("image", "section", "Image"),
        _f("projection", "single_choice", "Projection", required=True, options=["PA", "AP", "Lateral", "Other"]),
        _f("image_quality", "single_choice", "Image quality", required=True,
           options=["Good", "Adequate", "Poor but readable", "Unreadable"],
           help="Exposure, inspiration, rotation and whether both lung fields are fully shown."),
        _f("findings_section", "section", "Findings"),
        _f("abnormal", "yes_no", "Abnormal findings present", required=True,
           help="Any abnormality of the lungs, pleura, hila or mediastinum."),
        _f("findings", "multiple_choice", "Findings", required=True,
           options=["Cavitation", "Consolidation", "Nodules", "Pleural effusion", "Miliary pattern",
                    "Hilar or mediastinal lymphadenopathy", "Fibrosis", "Calcified granuloma", "Other"],
           visible_if={"field": "abnormal", "equals": True}),
        _f("other_finding", "text", "Other finding", required=True,
           visible_if={"field": "findings", "equals": "Other"}),
        _f("largest_cavity", "number", "Largest cavity diameter", min=1, max=150, unit="mm",
           visible_if={"field": "findings", "equals": "Cavitation"}),
        _f("affected_zones", "multiple_choice", "Affected lung zones",
           options=["Right upper", "Right middle", "Right lower", "Left upper", "Left middle", "Left lower"],
           visible_if={"field": "abnormal", "equals": True}),
        _f("assessment", "section", "Assessment"),
        _f("tb_likelihood", "score", "TB likelihood", required=True, min=0, max=100, step=1,
           help="Your overall impression: 0 = no sign of TB, 100 = certainly active TB."),
        _f("recommendation", "single_choice", "Recommendation", required=True,
           options=["No further action", "Sputum test (Xpert MTB/RIF)", "Clinical review",
                    "Repeat radiograph", "Refer to chest physician"]),
        _f("comments", "long_text", "Comments"),
    ],
}

MRI_QC = {
    "name": "mri-qc",
    "title": "MRI quality control",
    "description": "Technical quality of an MRI series, to decide whether it can be used or must be repeated.",
    "fields": [
        _f("acquisition", "section", "Acquisition"),
        _f("sequence", "single_choice", "Sequence", required=True,
           options=["T1-weighted", "T2-weighted", "FLAIR", "Diffusion (DWI)", "T2* / SWI", "Contrast-enhanced T1",
                    "Other"]),
        _f("coverage_complete", "yes_no", "Coverage complete", required=True,
           help="The whole region of interest is inside the field of view."),
        _f("artifacts_section", "section", "Artifacts"),
        _f("motion", "single_choice", "Motion / ghosting", required=True,
           options=["None", "Mild", "Moderate", "Severe"]),
        _f("snr_adequate", "yes_no", "Signal-to-noise adequate", required=True),
        _f("artifacts", "multiple_choice", "Other artifacts",
           options=["Susceptibility / metal", "Wrap-around (aliasing)", "Flow", "Truncation (Gibbs)",
                    "Intensity inhomogeneity", "Chemical shift", "Zipper / RF interference"]),
        _f("overall", "section", "Overall"),
        _f("quality_score", "score", "Overall quality", required=True, min=1, max=5, step=1,
           help="1 = non-diagnostic, 3 = acceptable, 5 = excellent."),
        _f("repeat_recommended", "yes_no", "Repeat recommended", required=True),
        _f("repeat_reason", "text", "Reason for repeat", required=True,
           visible_if={"field": "repeat_recommended", "equals": True}),
        _f("notes", "long_text", "Notes"),
    ],
}

BUILTIN_FORMS: list[dict] = [CXR_TB_SCREENING, MRI_QC]
