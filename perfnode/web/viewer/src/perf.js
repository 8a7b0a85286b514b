// The IHE PERF view of a series: all instances of a concatenation as one object, and a table of its
// frames from the functional groups (Dimension Index Values, Temporal Position Index, Stack ID,
// In-Stack Position Number, Frame Type, position). DICOM attributes come from dcmjs's naturalized
// data sets (the WADO-RS metadata); nothing here parses DICOM.

import dcmjs from "dcmjs";

const { DicomMetaDictionary } = dcmjs.data;

export const PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30";

/** A naturalized data set (dcmjs) from a DICOM JSON object. */
export function naturalize(json) {
  return DicomMetaDictionary.naturalizeDataset(json);
}

/** A sequence as an array of items (dcmjs gives an array, or one object for a single item). */
export function items(value) {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

export function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

/** An attribute of a frame's functional group: per-frame first, then shared (PS3.3 C.7.6.16). */
export function groupAttr(ds, frameIndex, sequence) {
  const perFrame = items(ds.PerFrameFunctionalGroupsSequence)[frameIndex];
  const fromPer = perFrame && items(perFrame[sequence])[0];
  if (fromPer) return fromPer;
  const shared = items(ds.SharedFunctionalGroupsSequence)[0];
  return shared ? items(shared[sequence])[0] : undefined;
}

function codeText(item) {
  if (!item) return "";
  const meaning = item.CodeMeaning || "";
  const value = item.CodeValue || "";
  const scheme = item.CodingSchemeDesignator || "";
  return `${meaning}${value ? ` (${scheme} ${value})` : ""}`;
}

function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

/** Frame Type value 3 of a frame (from the modality's Frame Type functional group). */
function frameType(ds, i) {
  for (const seq of ["MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "ParametricMapFrameTypeSequence",
    "FrameTypeSequence"]) {
    const item = groupAttr(ds, i, seq);
    if (item && item.FrameType) return items(item.FrameType);
  }
  return ds.ImageType ? items(ds.ImageType) : [];
}

function dateTimeSeconds(dt) {
  if (!dt) return null;
  const s = String(dt);
  const y = +s.slice(0, 4), mo = +s.slice(4, 6) - 1, d = +s.slice(6, 8);
  const h = +s.slice(8, 10) || 0, mi = +s.slice(10, 12) || 0, sec = parseFloat(s.slice(12)) || 0;
  return Date.UTC(y, mo, d, h, mi, 0) / 1000 + sec;
}

/**
 * The objects of a series: instances sharing a Concatenation UID are one object (PERF 4.16.4.2.2.7), in
 * In-Concatenation Number order, frames numbered through the concatenation. Other instances of the same
 * kind (SOP class, matrix; not Parametric Maps, one map each) are put together into one 4-D set — one image per slice and time point, or one
 * multi-frame instance per time point — placed by position and time. Largest first.
 */
export function buildObjects(datasets) {
  const groups = new Map();
  for (const ds of datasets) {
    // a Parametric Map instance is one map (one quantity): never merged with the others of its series
    const key = ds.ConcatenationUID ? `concatenation ${ds.ConcatenationUID}`
      : ds.SOPClassUID === PARAMETRIC_MAP ? `map ${ds.SOPInstanceUID}` : `series ${ds.SOPClassUID} ${ds.Rows}x${ds.Columns}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(ds);
  }
  const objects = [];
  for (const [key, parts] of groups) {
    const order = (ds) => Number(ds.InConcatenationNumber ?? ds.InstanceNumber ?? 0);
    parts.sort((a, b) => order(a) - order(b) || String(a.SOPInstanceUID).localeCompare(String(b.SOPInstanceUID)));
    objects.push(buildObject(key, parts));
  }
  objects.sort((a, b) => b.frames.length - a.frames.length);
  return objects;
}

function buildObject(key, parts) {
  const head = parts[0];
  const frames = [];
  const dimPointers = items(head.DimensionIndexSequence).map((d) => ({
    pointer: d.DimensionIndexPointer, group: d.FunctionalGroupPointer, label: d.DimensionDescriptionLabel || "",
  }));
  for (const ds of parts) {
    const n = Number(ds.NumberOfFrames || 1);
    const offset = ds.ConcatenationUID && ds.ConcatenationFrameOffsetNumber !== undefined
      ? Number(ds.ConcatenationFrameOffsetNumber) : frames.length;
    for (let i = 0; i < n; i++) {
      const content = groupAttr(ds, i, "FrameContentSequence") || {};
      const plane = groupAttr(ds, i, "PlanePositionSequence") || {};
      const orient = groupAttr(ds, i, "PlaneOrientationSequence") || {};
      const ipp = items(plane.ImagePositionPatient || ds.ImagePositionPatient).map(Number);
      const iop = items(orient.ImageOrientationPatient || ds.ImageOrientationPatient).map(Number);
      frames.push({
        instance: ds,
        sop: ds.SOPInstanceUID,
        indexInInstance: i,
        frameNumber: offset + i + 1, // in the concatenation (PS3.3 C.7.6.16.2.2.4)
        instanceFrameNumber: i + 1,
        tpi: content.TemporalPositionIndex !== undefined ? Number(content.TemporalPositionIndex) : null,
        stackId: content.StackID !== undefined ? String(content.StackID) : null,
        inStackPos: content.InStackPositionNumber !== undefined ? Number(content.InStackPositionNumber) : null,
        dimIndexValues: items(content.DimensionIndexValues).map(Number),
        acquisitionTime: dateTimeSeconds(content.FrameAcquisitionDateTime || content.FrameReferenceDateTime
          || ds.AcquisitionDateTime || (ds.AcquisitionTime ? `${ds.AcquisitionDate || ds.ContentDate || "19700101"}${ds.AcquisitionTime}` : null)),
        temporalPosition: ds.TemporalPositionIdentifier !== undefined ? Number(ds.TemporalPositionIdentifier) : null,
        triggerTimeS: ds.TriggerTime !== undefined && ds.TriggerTime !== "" ? Number(ds.TriggerTime) / 1000 : null,
        frameType: frameType(ds, i),
        ipp,
        iop,
      });
    }
  }
  frames.sort((a, b) => a.frameNumber - b.frameNumber);
  const iop = frames[0].iop.length === 6 ? frames[0].iop : [1, 0, 0, 0, 1, 0];
  const normal = cross(iop.slice(0, 3), iop.slice(3, 6));
  const positions = frames.map((f) => (f.ipp.length === 3 ? dot(f.ipp, normal) : 0));
  const minPos = Math.min(...positions);
  frames.forEach((f, k) => {
    f.sliceOffsetMm = positions[k] - minPos;
    f.position = positions[k];
  });
  // slices (by In-Stack Position, else by position) and time points (by Temporal Position Index, else time)
  const hasPerfIndices = frames.every((f) => f.tpi !== null && f.inStackPos !== null);
  const sliceKey = (f) => (hasPerfIndices ? `${f.stackId}/${f.inStackPos}` : f.position.toFixed(3));
  // without PERF indices: Temporal Position Identifier (classic images), else the n-th frame at that
  // position in acquisition order (slices of one time point are acquired at different times)
  const seen = new Map();
  const byTime = [...frames].sort((a, b) => (a.acquisitionTime ?? 0) - (b.acquisitionTime ?? 0) || a.frameNumber - b.frameNumber);
  for (const f of byTime) {
    const k = sliceKey(f);
    f.repeat = seen.get(k) ?? 0;
    seen.set(k, f.repeat + 1);
  }
  const timeKey = (f) => (hasPerfIndices ? f.tpi : f.temporalPosition ?? f.repeat);
  const sliceKeys = [...new Set(frames.map(sliceKey))];
  const slicePos = new Map(sliceKeys.map((k) => [k, frames.find((f) => sliceKey(f) === k).position]));
  sliceKeys.sort((a, b) => slicePos.get(a) - slicePos.get(b));
  const timeKeys = [...new Set(frames.map(timeKey))].sort((a, b) => a - b);
  const grid = timeKeys.map(() => sliceKeys.map(() => null));
  for (const f of frames) {
    f.z = sliceKeys.indexOf(sliceKey(f));
    f.t = timeKeys.indexOf(timeKey(f));
    grid[f.t][f.z] = f;
  }
  const agent = items(head.ContrastBolusAgentSequence);
  const shared = items(head.SharedFunctionalGroupsSequence)[0] || {};
  const echo = groupAttr(head, 0, "MREchoSequence");
  return {
    key,
    concatenationUID: head.ConcatenationUID || null,
    instances: parts,
    head,
    frames,
    grid,
    nz: sliceKeys.length,
    nt: timeKeys.length,
    rows: Number(head.Rows),
    cols: Number(head.Columns),
    isMap: head.SOPClassUID === PARAMETRIC_MAP,
    dimPointers,
    hasPerfIndices,
    contrastAgents: agent.map((a) => ({
      agent: codeText(a) || a.ContrastBolusAgent || "",
      routes: items(a.ContrastBolusAdministrationRouteSequence).map(codeText),
    })),
    echoTimeS: echo && echo.EffectiveEchoTime ? Number(echo.EffectiveEchoTime) / 1000 : head.EchoTime ? Number(head.EchoTime) / 1000 : null,
    sharedPixelMeasures: items(shared.PixelMeasuresSequence)[0] || null,
  };
}

/**
 * Stack-mode scroll orders of PERF 4.16.4.2.2.7: by Temporal Position Index then Stack ID /
 * In-Stack Position Number ("time-first": all slices of time point 1, then of time point 2 …), or by
 * Stack ID / In-Stack Position Number then Temporal Position Index ("slice-first").
 */
export function scrollOrder(obj, order) {
  const byTpi = (a, b) => (a.tpi ?? a.t) - (b.tpi ?? b.t);
  const bySlice = (a, b) => String(a.stackId ?? "").localeCompare(String(b.stackId ?? ""), undefined, { numeric: true })
    || (a.inStackPos ?? a.z) - (b.inStackPos ?? b.z);
  const frames = [...obj.frames];
  frames.sort(order === "time-first" ? (a, b) => byTpi(a, b) || bySlice(a, b) : (a, b) => bySlice(a, b) || byTpi(a, b));
  return frames;
}

/**
 * Frames in viewports by their Dimension Index Values (PERF 4.16.4.2.2.7): one viewport per value of
 * the dimension whose Dimension Index Pointer is In-Stack Position Number (0020,9057), each in time
 * order. Without such a dimension, In-Stack Position Number itself (or the slice) groups the frames.
 * Returns [[value, frames, how]].
 */
export function framesByInStackPosition(obj) {
  const k = obj.dimPointers.findIndex((d) => String(d.pointer).toUpperCase().replace(/[^0-9A-F]/g, "") === "00209057");
  const how = k >= 0 ? `Dimension Index Values[${k + 1}]` : "In-Stack Position Number";
  const groups = new Map();
  for (const f of obj.frames) {
    const key = k >= 0 && f.dimIndexValues.length > k ? f.dimIndexValues[k] : f.inStackPos ?? f.z + 1;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(f);
  }
  for (const list of groups.values()) list.sort((a, b) => (a.tpi ?? a.t) - (b.tpi ?? b.t));
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([key, frames]) => [key, frames, how]);
}

/** Real-world value mapping of a frame: slope, intercept, unit and quantity (Parametric Maps, RWVM). */
export function valueMapping(ds, frameIndex) {
  const rwvm = groupAttr(ds, frameIndex, "RealWorldValueMappingSequence") || items(ds.RealWorldValueMappingSequence)[0];
  if (rwvm && rwvm.RealWorldValueSlope !== undefined) {
    const unitItem = items(rwvm.MeasurementUnitsCodeSequence)[0] || {};
    const quantity = items(rwvm.QuantityDefinitionSequence).map((q) => items(q.ConceptCodeSequence)[0])
      .filter((c) => c && c.CodeMeaning).map((c) => c.CodeMeaning)[0];
    return {
      slope: Number(rwvm.RealWorldValueSlope),
      intercept: Number(rwvm.RealWorldValueIntercept || 0),
      unit: unitItem.CodeValue || "",
      unitMeaning: unitItem.CodeMeaning || "",
      label: rwvm.LUTLabel || "",
      quantity: quantity || rwvm.LUTExplanation || rwvm.LUTLabel || "",
      first: rwvm.DoubleFloatRealWorldValueFirst ?? rwvm.RealWorldValueFirstValueMapped,
      last: rwvm.DoubleFloatRealWorldValueLast ?? rwvm.RealWorldValueLastValueMapped,
    };
  }
  const pvt = groupAttr(ds, frameIndex, "PixelValueTransformationSequence") || ds;
  return {
    slope: Number(pvt.RescaleSlope ?? 1),
    intercept: Number(pvt.RescaleIntercept ?? 0),
    unit: pvt.RescaleType || "",
    unitMeaning: "",
    label: "",
    quantity: "",
  };
}

/** perfnode's provenance (private block "PERFNODE 1.0", JSON), when the map carries it. */
export function provenance(json) {
  for (const [tag, value] of Object.entries(json)) {
    if (tag.startsWith("0071") && tag.slice(4, 6) !== "00" && value.vr === "UT" && value.Value) {
      try {
        const record = JSON.parse(value.Value[0]);
        if (record && record.schema && String(record.schema).startsWith("perfnode-provenance")) return record;
      } catch {
        /* not ours */
      }
    }
  }
  return null;
}
