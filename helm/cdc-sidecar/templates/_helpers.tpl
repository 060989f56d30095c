{{/* Chart name, overridable. */}}
{{- define "cdc-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already holds it. */}}
{{- define "cdc-sidecar.fullname" -}}
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

{{- define "cdc-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdc-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cdc-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cdc-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cdc-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The port of config.http.listen ("0.0.0.0:9187", "[::]:9187"). */}}
{{- define "cdc-sidecar.port" -}}
{{- splitList ":" .Values.config.http.listen | last }}
{{- end }}

{{- define "cdc-sidecar.secretDir" -}}
/etc/cdc-sidecar/secrets
{{- end }}

{{/*
One TOML "key = value" line per entry of a dict. Scalars and lists are written with
toJson, whose strings, numbers, booleans and arrays are valid TOML. Null and empty
values are left out, so the sidecar's default applies.
*/}}
{{- define "cdc-sidecar.tomlKeys" -}}
{{- range $key, $value := . }}
{{- if and (not (kindIs "invalid" $value)) (not (kindIs "map" $value)) (ne (toString $value) "") }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secrets belong in secrets.existingSecret, never in the ConfigMap. */}}
{{- define "cdc-sidecar.validate" -}}
{{- $c := .Values.config }}
{{- if or $c.source.password $c.checkpoint.password $c.sinks.pulsar.token $c.sinks.redis_pubsub.password }}
{{- fail "put passwords and tokens in secrets.existingSecret, not in config (it is rendered into a ConfigMap)" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- fail "secrets.existingSecret is required: the name of a Secret holding the SQL password (key secrets.sqlPasswordKey)" }}
{{- end }}
{{- if not .Values.secrets.sqlPasswordKey }}
{{- fail "secrets.sqlPasswordKey is required: the key of the SQL password in secrets.existingSecret" }}
{{- end }}
{{- if not $c.tables }}
{{- fail "config.tables: list at least one table" }}
{{- end }}
{{- end }}

{{/* sidecar.toml, rendered from .Values.config plus the *_file paths of the secrets. */}}
{{- define "cdc-sidecar.toml" -}}
{{- $c := .Values.config }}
{{- $s := .Values.secrets }}
{{- $dir := include "cdc-sidecar.secretDir" . -}}
# Rendered by the cdc-sidecar Helm chart from .Values.config.
[source]
{{- include "cdc-sidecar.tomlKeys" $c.source }}
password_file = {{ printf "%s/%s" $dir $s.sqlPasswordKey | toJson }}

[poll]
{{- include "cdc-sidecar.tomlKeys" $c.poll }}
{{- range $c.tables }}

[[tables]]
{{- include "cdc-sidecar.tomlKeys" . }}
{{- end }}

[checkpoint]
{{- include "cdc-sidecar.tomlKeys" $c.checkpoint }}
{{- with $s.redisPasswordKey }}
password_file = {{ printf "%s/%s" $dir . | toJson }}
{{- end }}

[sinks.pulsar]
{{- include "cdc-sidecar.tomlKeys" $c.sinks.pulsar }}
{{- with $s.pulsarTokenKey }}
token_file = {{ printf "%s/%s" $dir . | toJson }}
{{- end }}

[sinks.redis_pubsub]
{{- include "cdc-sidecar.tomlKeys" $c.sinks.redis_pubsub }}
{{- with $s.redisPasswordKey }}
password_file = {{ printf "%s/%s" $dir . | toJson }}
{{- end }}

[http]
{{- include "cdc-sidecar.tomlKeys" $c.http }}

[log]
{{- include "cdc-sidecar.tomlKeys" $c.log }}

[shutdown]
{{- include "cdc-sidecar.tomlKeys" $c.shutdown }}
{{- end }}
