"""The groups of the iBUG 300-W 68-point scheme that every landmark backend returns: the one place
their indices live (alignment, masks, training weights and the evaluation's measures read them
here). "Left" is the image's left, i.e. the subject's right eye."""
from __future__ import annotations

JAW = slice(0, 17)
NON_JAW = slice(17, 68)         # brows, nose, eyes, mouth: what the alignment is fitted to
BROWS = slice(17, 27)
NOSE_TIP = 30
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)           # outer and inner lips
OUTER_EYE_CORNERS = (36, 45)    # their distance is the inter-ocular distance
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))             # upper and lower inner lip, facing
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))      # upper and lower lid, facing
