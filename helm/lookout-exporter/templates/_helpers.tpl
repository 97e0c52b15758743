{{/*
Names, labels and the decisions several templates share.
*/}}

{{- define "lookout-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lookout-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if hasPrefix .Release.Name $name }}
{{- /* helm install lookout (or lookout-exporter): the Service is lookout-exporter */}}
{{- $name | trunc 63 | trimSuffix "-" }}
{{- else if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lookout-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lookout-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lookout-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lookout-exporter.labels" -}}
helm.sh/chart: {{ include "lookout-exporter.chart" . }}
{{ include "lookout-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lookout
{{- end }}

{{- define "lookout-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lookout-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lookout-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Pods that each probe a share of the targets: more than one replica, probing sharded.
*/}}
{{- define "lookout-exporter.sharded" -}}
{{- if and (gt (int .Values.replicas) 1) (eq .Values.probing "sharded") }}true{{ end }}
{{- end }}

{{/*
The heartbeat store shared by every pod: PostgreSQL.
*/}}
{{- define "lookout-exporter.postgresql" -}}
{{- if eq .Values.heartbeatStore.type "postgresql" }}true{{ end }}
{{- end }}

{{/*
A PersistentVolumeClaim per pod for its SQLite heartbeat store (not with PostgreSQL).
*/}}
{{- define "lookout-exporter.claims" -}}
{{- if and .Values.persistence.enabled (not (include "lookout-exporter.postgresql" .)) }}true{{ end }}
{{- end }}

{{/*
A StatefulSet when pods need a stable identity: a PersistentVolumeClaim each, or a shard ordinal.
*/}}
{{- define "lookout-exporter.statefulset" -}}
{{- if or (include "lookout-exporter.claims" .) (include "lookout-exporter.sharded" .) }}true{{ end }}
{{- end }}

{{/*
The default base of runbook_url in rules/*.yml, rewritten to prometheusRule.runbookUrlBase.
*/}}
{{- define "lookout-exporter.defaultRunbookUrlBase" -}}
https://github.com/lookout-exporter/lookout/blob/main/docs/runbooks/
{{- end }}

{{/*
A Kubernetes object name from a file below a directory:
(dict "prefix" "r-lookout" "dir" "files/rules/" "file" "files/rules/alerts/Probes_HTTP.yml")
-> "r-lookout-alerts-probes-http".
*/}}
{{- define "lookout-exporter.fileObjectName" -}}
{{- $relative := .file | trimPrefix .dir | trimSuffix (ext .file) }}
{{- $base := $relative | lower | replace "/" "-" | replace "_" "-" | replace "." "-" }}
{{- printf "%s-%s" .prefix $base | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
The selector rules/*.yml use for the exporter's own series (up, absent), rewritten to
prometheusRule.jobSelector, or to job="<serviceMonitor.job>".
*/}}
{{- define "lookout-exporter.defaultJobSelector" -}}
job="lookout"
{{- end }}
