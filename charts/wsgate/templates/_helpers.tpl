{{/*
Chart name, overridable by nameOverride.
*/}}
{{- define "wsgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name (suffixed with the
chart name unless the release name already contains it). 63 characters at most (DNS label).
*/}}
{{- define "wsgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "wsgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "wsgate.labels" -}}
helm.sh/chart: {{ include "wsgate.chart" . }}
{{ include "wsgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: wsgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the pods (immutable once a Deployment exists: keep them small and stable).
*/}}
{{- define "wsgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wsgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The selector labels as KEY=VALUE,KEY=VALUE (--gateway-service-selector: what the Gateways'
Services select).
*/}}
{{- define "wsgate.selectorFlag" -}}
{{- $pairs := list }}
{{- range $k, $v := include "wsgate.selectorLabels" . | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
Name of the ServiceAccount wsgate runs as.
*/}}
{{- define "wsgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wsgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository@digest, else repository:tag (tag defaults to the appVersion).
*/}}
{{- define "wsgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
--shutdown-drain in whole seconds, validated.
*/}}
{{- define "wsgate.drainSeconds" -}}
{{- $drain := .Values.controller.shutdownDrainSeconds }}
{{- if not (or (kindIs "float64" $drain) (kindIs "int64" $drain) (kindIs "int" $drain)) }}
{{- fail (printf "controller.shutdownDrainSeconds must be a whole number of seconds, got %v" $drain) }}
{{- end }}
{{- if or (lt (int $drain) 0) (ne (float64 $drain) (float64 (int $drain))) }}
{{- fail (printf "controller.shutdownDrainSeconds must be a whole number of seconds >= 0, got %v" $drain) }}
{{- end }}
{{- int $drain }}
{{- end }}

{{/*
Close spread in whole seconds: >= 0 and, when set, it must fit in the drain after wsgate's accept
delay (min(drain / 6, 5 s)), as `wsgate run` checks at start (it refuses to start otherwise).
*/}}
{{- define "wsgate.closeSpreadSeconds" -}}
{{- $spread := .Values.controller.shutdownCloseSpreadSeconds | default 0 }}
{{- if not (or (kindIs "float64" $spread) (kindIs "int64" $spread) (kindIs "int" $spread)) }}
{{- fail (printf "controller.shutdownCloseSpreadSeconds must be a whole number of seconds, got %v" $spread) }}
{{- end }}
{{- if or (lt (int $spread) 0) (ne (float64 $spread) (float64 (int $spread))) }}
{{- fail (printf "controller.shutdownCloseSpreadSeconds must be a whole number of seconds >= 0, got %v" $spread) }}
{{- end }}
{{- $drain := int (include "wsgate.drainSeconds" .) }}
{{- $accept := minf (divf $drain 6) 5 }}
{{- if and (gt (int $spread) 0) (ge (addf $spread $accept) (float64 $drain)) }}
{{- fail (printf "controller.shutdownCloseSpreadSeconds (%d) does not fit in controller.shutdownDrainSeconds (%d): spread + min(drain/6, 5) must be below the drain" (int $spread) $drain) }}
{{- end }}
{{- int $spread }}
{{- end }}

{{/*
terminationGracePeriodSeconds: strictly above the drain, so the kubelet never SIGKILLs wsgate while it
is still closing WebSocket sessions with 1001. Default: drain + 15 s (time for the last close
handshakes, the flush of logs and the Lease release).
*/}}
{{- define "wsgate.terminationGracePeriodSeconds" -}}
{{- $drain := int (include "wsgate.drainSeconds" .) }}
{{- $grace := .Values.controller.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- add $drain 15 }}
{{- else if le (int $grace) $drain }}
{{- fail (printf "controller.terminationGracePeriodSeconds (%v) must be greater than controller.shutdownDrainSeconds (%d)" $grace $drain) }}
{{- else }}
{{- int $grace }}
{{- end }}
{{- end }}

{{/*
--publish-service value: controller.publishService, else this release's own traffic Service.
*/}}
{{- define "wsgate.publishService" -}}
{{- default (printf "%s/%s" .Release.Namespace (include "wsgate.fullname" .)) .Values.controller.publishService }}
{{- end }}
