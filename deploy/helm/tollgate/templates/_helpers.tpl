{{/*
Names, labels and shared pod parts. Selector labels (what a workload's selector and a
Service match) are separate from metadata labels (everything else), as in Kong's chart:
selectors must never change on upgrade, metadata labels may.
*/}}

{{- define "tollgate.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: (dict "root" $ "component" "gateway") */}}
{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: tollgate
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Metadata labels: (dict "root" $ "component" "gateway") */}}
{{- define "tollgate.labels" -}}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/part-of: tollgate
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "tollgate.chart" .root }}
{{- end -}}

{{- define "tollgate.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{ printf "%s@%s" $image.repository $image.digest }}
{{- else -}}
{{ printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion) }}
{{- end -}}
{{- end -}}

{{/* A required secret reference: (dict "root" $ "name" "database" "for" "every component") */}}
{{- define "tollgate.secretName" -}}
{{- $ref := index .root.Values.secrets .name -}}
{{- if not $ref.existingSecret -}}
{{- fail (printf "secrets.%s.existingSecret is required (%s): name an existing Secret; the chart never creates or defaults secrets" .name .for) -}}
{{- end -}}
{{- $ref.existingSecret -}}
{{- end -}}

{{/* An env entry from a required secret: (dict "root" $ "name" "database" "env" "TOLLGATE_DATABASE_URL" "for" "…") */}}
{{- define "tollgate.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tollgate.secretName" . }}
      key: {{ (index .root.Values.secrets .name).key }}
{{- end -}}

{{- define "tollgate.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "tollgate.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "tollgate.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
Init containers that wait for a TCP endpoint: (dict "root" $ "targets" (list (list "postgresql" host port) …)).
bash's /dev/tcp from the image itself: no second image to pull and trust.
*/}}
{{- define "tollgate.waitFor" -}}
{{- $root := .root -}}
{{- if $root.Values.waitFor.enabled }}
{{- range .targets }}
- name: wait-for-{{ index . 0 }}
  image: {{ include "tollgate.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - bash
    - -c
    - |
      deadline=$((SECONDS + {{ $root.Values.waitFor.timeoutSeconds }}))
      until (exec 3<>"/dev/tcp/$WAIT_HOST/$WAIT_PORT") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "{{ index . 0 }} at $WAIT_HOST:$WAIT_PORT unreachable for {{ $root.Values.waitFor.timeoutSeconds }}s"; exit 1; }
        echo "waiting for {{ index . 0 }} at $WAIT_HOST:$WAIT_PORT"; sleep 2
      done
  env:
    - name: WAIT_HOST
      value: {{ index . 1 | quote }}
    - name: WAIT_PORT
      value: {{ index . 2 | quote }}
  securityContext:
    {{- include "tollgate.containerSecurityContext" $root | nindent 4 }}
  resources:
    {{- toYaml $root.Values.waitFor.resources | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* An HTTP probe: (dict "path" "/health" "port" "admin" "probe" .Values.gateway.probes.liveness) */}}
{{- define "tollgate.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
{{- end -}}

{{/* The gateway's TOLLGATE_PROXY_REPLICAS, checked against the HPA's bounds. */}}
{{- define "tollgate.gateway.limiterReplicas" -}}
{{- $g := .Values.gateway -}}
{{- $n := $g.limiterReplicas | default (ternary $g.hpa.minReplicas $g.replicas $g.hpa.enabled) | int -}}
{{- if $g.hpa.enabled -}}
{{- if or (lt $n (int $g.hpa.minReplicas)) (gt $n (int $g.hpa.maxReplicas)) -}}
{{- fail (printf "gateway.limiterReplicas (%d) must lie within gateway.hpa.minReplicas..maxReplicas (%d..%d)" $n (int $g.hpa.minReplicas) (int $g.hpa.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* The NetworkPolicy egress rule of a dependency: (dict "egress" .Values.networkPolicy.egress.postgresql) */}}
{{- define "tollgate.egressRule" -}}
- ports:
    {{- toYaml .egress.ports | nindent 4 }}
  {{- with .egress.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "tollgate.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
