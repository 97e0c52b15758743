{{/*
The pod template shared by the Deployment and the StatefulSet.
*/}}
{{- define "lookout-exporter.podTemplate" -}}
{{- $sharded := include "lookout-exporter.sharded" . -}}
{{- $postgresql := include "lookout-exporter.postgresql" . -}}
metadata:
  labels:
    {{- include "lookout-exporter.labels" . | nindent 4 }}
    app.kubernetes.io/component: exporter
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "lookout-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: {{ include "lookout-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      # The data volume is the working directory: the exporter's relative data paths land on it.
      workingDir: /var/lib/lookout
      args:
        - run
        - --config=/etc/lookout/config.yaml
        - --web.listen-address=:9471
        - --log.level={{ .Values.log.level }}
        - --log.format={{ .Values.log.format }}
        {{- with .Values.location }}
        - --location={{ . }}
        {{- end }}
        {{- if $sharded }}
        - --shard=$(LOOKOUT_SHARD_INDEX)/{{ int .Values.replicas }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or $sharded $postgresql .Values.env }}
      env:
        {{- if $sharded }}
        # The StatefulSet ordinal (Kubernetes >= 1.28 labels every StatefulSet pod with it).
        - name: LOOKOUT_SHARD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        {{- if $postgresql }}
        # The shared heartbeat store's URL (the config's storage: ${LOOKOUT_STORAGE_URL}).
        - name: LOOKOUT_STORAGE_URL
          valueFrom:
            secretKeyRef:
              name: {{ .Values.heartbeatStore.postgresql.urlSecret.name }}
              key: {{ .Values.heartbeatStore.postgresql.urlSecret.key }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: 9471
          protocol: TCP
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/lookout
          readOnly: true
        - name: data
          mountPath: /var/lib/lookout
        - name: tmp
          mountPath: /tmp
        {{- range $i, $mount := .Values.secretMounts }}
        - name: secret-{{ $i }}
          mountPath: {{ $mount.mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "lookout-exporter.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if not (include "lookout-exporter.claims" .) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- range $i, $mount := .Values.secretMounts }}
    - name: secret-{{ $i }}
      secret:
        secretName: {{ $mount.secretName }}
        defaultMode: 0440
        {{- with $mount.items }}
        items:
          {{- toYaml . | nindent 10 }}
        {{- end }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
